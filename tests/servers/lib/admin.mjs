// Admin endpoints under /_harness (no authentication; the server listens on
// 127.0.0.1 only).
//
//   GET  /_harness/stats          -> token-request and Bulk Data counters
//   POST /_harness/reset          -> zero the counters (and the kick-off log)
//   POST /_harness/revoke-all     -> every access token issued so far is refused by /fhir
//   POST /_harness/seed           {"patients": N, "observationsPerPatient": M} -> add resources
//   GET  /_harness/bulk-settings  -> the Bulk Data settings
//   POST /_harness/bulk-settings  {"requiresAccessToken", "pollCount", "fileMax",
//                                  "failNextPolls", "rateLimitNextPolls"} (each optional)
//   GET  /_harness/bulk-kickoffs  -> {"kickoffs": [...]} every accepted $export kick-off

import { BodyTooLarge, readBody, sendJson } from './http_util.mjs';
import {
  MAX_SEED_OBSERVATIONS_PER_PATIENT, MAX_SEED_PATIENTS, seedBulk,
} from './seed.mjs';

/** A request the admin endpoint refuses with 400 and this message. */
class AdminError extends Error {}

/** The JSON request body of a route that takes one ({} when empty). */
function jsonBody(text) {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AdminError(`request body is not JSON: ${err.message}`);
  }
}

function seedCount(body, key, max) {
  const value = body[key] ?? 0;
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new AdminError(`${key} must be an integer in 0..${max}`);
  }
  return value;
}

export function createAdminHandler({
  state, repo, bulk, log,
}) {
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
    'POST /_harness/seed': async (text) => {
      const body = jsonBody(text);
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw new AdminError('body must be {"patients": N, "observationsPerPatient": M}');
      }
      const unknown = Object.keys(body).filter((k) => !['patients', 'observationsPerPatient'].includes(k));
      if (unknown.length > 0) throw new AdminError(`unknown field(s): ${unknown.join(', ')}`);
      const patients = seedCount(body, 'patients', MAX_SEED_PATIENTS);
      const observationsPerPatient = seedCount(body, 'observationsPerPatient', MAX_SEED_OBSERVATIONS_PER_PATIENT);
      const started = performance.now();
      const patientIds = await seedBulk(repo, { patients, observationsPerPatient });
      const totals = Object.fromEntries(repo.resourceTypes().sort()
        .map((t) => [t, [...repo.storedResources(t)].length]));
      log(`admin: seeded ${patients} patient(s) x ${observationsPerPatient} observation(s) `
        + `in ${Math.round(performance.now() - started)} ms`);
      return [200, {
        patients, observations: patients * observationsPerPatient, patient_ids: patientIds, totals,
      }];
    },
    'GET /_harness/bulk-settings': () => [200, bulk.settingsView()],
    'POST /_harness/bulk-settings': (text) => {
      const body = jsonBody(text);
      let settings;
      try {
        settings = bulk.updateSettings(body);
      } catch (err) {
        throw new AdminError(err.message);
      }
      log(`admin: bulk settings ${JSON.stringify(settings)}`);
      return [200, settings];
    },
    'GET /_harness/bulk-kickoffs': () => [200, { kickoffs: state.bulkKickoffs }],
  };

  return async function handleAdmin(req, res, pathname) {
    const route = routes[`${req.method} ${pathname}`];
    if (!route) {
      req.resume();
      const known = Object.keys(routes).some((key) => key.endsWith(` ${pathname}`));
      sendJson(res, known ? 405 : 404, { error: known ? 'method not allowed' : 'not found' });
      return;
    }
    let text;
    try {
      text = (await readBody(req)).toString('utf8');
    } catch (err) {
      if (!(err instanceof BodyTooLarge)) throw err;
      sendJson(res, 413, { error: err.message });
      return;
    }
    try {
      const [status, answer] = await route(text);
      sendJson(res, status, answer);
    } catch (err) {
      if (!(err instanceof AdminError)) throw err;
      log(`admin: ${req.method} ${pathname} -> 400 (${err.message})`);
      sendJson(res, 400, { error: err.message });
    }
  };
}
