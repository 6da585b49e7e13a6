// Admin endpoints under /_harness (no authentication; the server listens on
// 127.0.0.1 only).
//
//   GET  /_harness/stats       -> {"token_requests": N, "token_requests_by_client": {"id": N}}
//   POST /_harness/reset       -> zero the token-request counters
//   POST /_harness/revoke-all  -> every access token issued so far is refused by /fhir

import { sendJson } from './http_util.mjs';

export function createAdminHandler({ state, log }) {
  const routes = {
    'GET /_harness/stats': () => [200, state.stats()],
    'POST /_harness/reset': () => {
      state.resetStats();
      log('admin: stats reset');
      return [200, state.stats()];
    },
    'POST /_harness/revoke-all': () => {
      const revoked = state.revokeAll();
      log(`admin: revoked ${revoked} access token(s)`);
      return [200, { revoked }];
    },
  };

  return function handleAdmin(req, res, pathname) {
    const route = routes[`${req.method} ${pathname}`];
    if (!route) {
      const known = Object.keys(routes).some((key) => key.endsWith(` ${pathname}`));
      sendJson(res, known ? 405 : 404, { error: known ? 'method not allowed' : 'not found' });
      return;
    }
    // Drain any request body before answering.
    req.resume();
    const [status, body] = route();
    sendJson(res, status, body);
  };
}
