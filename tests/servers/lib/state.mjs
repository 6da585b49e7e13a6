// Mutable harness state shared by the authorization server, the FHIR endpoint
// and the admin endpoints: token-request counters and token revocation.

export class HarnessState {
  constructor() {
    this.tokenRequests = 0;
    this.tokenRequestsByClient = new Map();
    // jti of every access token issued since the last revoke-all.
    this.liveTokenIds = new Set();
    // jti of every access token revoked by revoke-all.
    this.revokedTokenIds = new Set();
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
  }

  stats() {
    return {
      token_requests: this.tokenRequests,
      token_requests_by_client: Object.fromEntries(this.tokenRequestsByClient),
    };
  }
}
