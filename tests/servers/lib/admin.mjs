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
//   POST /_harness/launch         {"patient", "encounter", "fhirContext", ...} -> {"launch": id, "iss": base}
//   GET  /_harness/standalone-context, POST (replace) -> the standalone launch context
//   GET  /_harness/token-settings, POST {"accessTokenTtl", "refreshTokenTtl", "idTokenTtl"}

import { BodyTooLarge, readBody, sendJson } from './http_util.mjs';
import { LaunchContextError } from './launch.mjs';
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

const TOKEN_SETTING_KEYS = ['accessTokenTtl', 'refreshTokenTtl', 'idTokenTtl'];

/** Applies a POST /_harness/token-settings body to `settings` (all or nothing). */
function updateTokenSettings(settings, body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new AdminError(`body must be an object with any of ${TOKEN_SETTING_KEYS.join(', ')}`);
  }
  const unknown = Object.keys(body).filter((k) => !TOKEN_SETTING_KEYS.includes(k));
  if (unknown.length > 0) throw new AdminError(`unknown field(s): ${unknown.join(', ')}`);
  for (const [key, value] of Object.entries(body)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new AdminError(`${key} must be a positive integer (seconds)`);
  }
  Object.assign(settings, body);
  return { ...settings };
}

/** Runs a launch-store update, turning its validation errors into 400s. */
function launchCall(fn) {
  try {
    return fn();
  } catch (err) {
    if (err instanceof LaunchContextError) throw new AdminError(err.message);
    throw err;
  }
}

export function createAdminHandler({
  state, repo, bulk, launchStore, tokenSettings, log,
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
    'POST /_harness/launch': (text) => {
      const body = jsonBody(text);
      const launch = launchCall(() => launchStore.createLaunch(body));
      log(`admin: launch created with ${Object.keys(body).join(',') || 'no context'}`);
      return [200, { launch, iss: launchStore.base }];
    },
    'GET /_harness/standalone-context': () => [200, launchStore.standaloneView()],
    'POST /_harness/standalone-context': (text) => {
      const body = jsonBody(text);
      const view = launchCall(() => launchStore.setStandalone(body));
      log(`admin: standalone context ${JSON.stringify(view)}`);
      return [200, view];
    },
    'GET /_harness/token-settings': () => [200, { ...tokenSettings }],
    'POST /_harness/token-settings': (text) => {
      const settings = updateTokenSettings(tokenSettings, jsonBody(text));
      log(`admin: token settings ${JSON.stringify(settings)}`);
      return [200, settings];
    },
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
