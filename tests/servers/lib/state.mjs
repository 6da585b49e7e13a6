// Mutable harness state shared by the authorization server, the FHIR endpoint
// and the admin endpoints: request counters, token revocation and the log of
// Bulk Data kick-offs.

export class HarnessState {
  constructor() {
    this.tokenRequests = 0;
    this.tokenRequestsByClient = new Map();
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
  recordTokenRequest(clientId) {
    this.tokenRequests += 1;
    this.tokenRequestsByClient.set(clientId, (this.tokenRequestsByClient.get(clientId) ?? 0) + 1);
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

  isRevoked(jti) {
    return this.revokedTokenIds.has(jti);
  }

  resetStats() {
    this.tokenRequests = 0;
    this.tokenRequestsByClient.clear();
    this.bulk = HarnessState.zeroBulkCounters();
    this.bulkKickoffs.length = 0;
  }

  stats() {
    return {
      token_requests: this.tokenRequests,
      token_requests_by_client: Object.fromEntries(this.tokenRequestsByClient),
      bulk_kickoff_requests: this.bulk.kickoffs,
      bulk_status_requests: this.bulk.statusRequests,
      bulk_file_requests: this.bulk.fileRequests,
      bulk_file_requests_with_auth: this.bulk.fileRequestsWithAuth,
      bulk_file_requests_without_auth: this.bulk.fileRequestsWithoutAuth,
    };
  }
}
