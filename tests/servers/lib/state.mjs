// Mutable harness state shared by the authorization server, the FHIR endpoint
// and the admin endpoints: request counters, token revocation and the log of
// Bulk Data kick-offs.

/** Adds one to `map[key]`. */
function bump(map, key) {
  map.set(key, (map.get(key) ?? 0) + 1);
}

export class HarnessState {
  constructor() {
    this.tokenRequests = 0;
    this.tokenRequestsByClient = new Map();
    // Token requests by grant type (authorization_code, refresh_token), by claimed client id.
    this.codeExchangesByClient = new Map();
    this.refreshRequestsByClient = new Map();
    // jti of every access token issued since the last revoke-all.
    this.liveTokenIds = new Set();
    // jti of every access token revoked by revoke-all.
    this.revokedTokenIds = new Set();
    this.bulk = HarnessState.zeroBulkCounters();
    // One record per accepted $export kick-off (see BulkExports#kickoff).
    this.bulkKickoffs = [];
  }

  static zeroBulkCounters() {
    return {
      kickoffs: 0,
      statusRequests: 0,
      fileRequests: 0,
      // Only requests for files of exports whose requiresAccessToken is false.
      fileRequestsWithAuth: 0,
      fileRequestsWithoutAuth: 0,
    };
  }

  /** Remembers an accepted kick-off (its parameters, including ignored ones). */
  recordBulkKickoff(record) {
    this.bulk.kickoffs += 1;
    this.bulkKickoffs.push(record);
  }

  recordBulkStatusRequest() {
    this.bulk.statusRequests += 1;
  }

  /** Counts a request for a bulk file; `open` = the export does not require a token. */
  recordBulkFileRequest({ open, withAuth }) {
    this.bulk.fileRequests += 1;
    if (open && withAuth) this.bulk.fileRequestsWithAuth += 1;
    if (open && !withAuth) this.bulk.fileRequestsWithoutAuth += 1;
  }

  /** Counts one POST to the token endpoint (whatever its outcome). */
  recordTokenRequest(clientId, grantType) {
    this.tokenRequests += 1;
    bump(this.tokenRequestsByClient, clientId);
    if (grantType === 'authorization_code') bump(this.codeExchangesByClient, clientId);
    if (grantType === 'refresh_token') bump(this.refreshRequestsByClient, clientId);
  }

  /** Remembers an issued access token by its `jti`. */
  recordIssuedToken(jti) {
    if (typeof jti === 'string') this.liveTokenIds.add(jti);
  }

  /** Revokes every access token issued so far; later tokens are unaffected. */
  revokeAll() {
    for (const jti of this.liveTokenIds) this.revokedTokenIds.add(jti);
    const count = this.liveTokenIds.size;
    this.liveTokenIds.clear();
    return count;
  }

  /** Revokes one access token (token revocation, or its grant was revoked). */
  revokeToken(jti) {
    if (typeof jti !== 'string') return;
    this.liveTokenIds.delete(jti);
    this.revokedTokenIds.add(jti);
  }

  isRevoked(jti) {
    return this.revokedTokenIds.has(jti);
  }

  resetStats() {
    this.tokenRequests = 0;
    this.tokenRequestsByClient.clear();
    this.codeExchangesByClient.clear();
    this.refreshRequestsByClient.clear();
    this.bulk = HarnessState.zeroBulkCounters();
    this.bulkKickoffs.length = 0;
  }

  stats() {
    return {
      token_requests: this.tokenRequests,
      token_requests_by_client: Object.fromEntries(this.tokenRequestsByClient),
      code_exchanges_by_client: Object.fromEntries(this.codeExchangesByClient),
      refresh_requests_by_client: Object.fromEntries(this.refreshRequestsByClient),
      bulk_kickoff_requests: this.bulk.kickoffs,
      bulk_status_requests: this.bulk.statusRequests,
      bulk_file_requests: this.bulk.fileRequests,
      bulk_file_requests_with_auth: this.bulk.fileRequestsWithAuth,
      bulk_file_requests_without_auth: this.bulk.fileRequestsWithoutAuth,
    };
  }
}
