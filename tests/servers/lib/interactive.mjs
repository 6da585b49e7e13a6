// Interactive mode (CONFIG `"interactive": true`), for a real browser:
//
// - oidc-provider's own login and consent pages (its devInteractions) replace
//   the auto-approving interaction; the login name is the user's FHIR
//   reference (e.g. `Practitioner/<id>`), any password is accepted;
// - `bindInteractiveGrant`: when an authorization resumes after that consent,
//   the Grant gets the launch context (EHR launch or standalone), as the
//   auto-approving interaction binds it;
// - `GET /ehr?app=<the app's launch URL>[&patient=<id>]`: an "EHR" page whose
//   link launches the app (`iss` + `launch`) for a new launch context.

import { sendJson } from './http_util.mjs';

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

/** Provider middleware: binds the launch context to a Grant approved on the consent page. */
export function bindInteractiveGrant({ store, log }) {
  return async function bindGrant(ctx, next) {
    await next();
    const grantId = ctx.oidc?.result?.consent?.grantId;
    if (!ctx.path.startsWith('/auth') || !grantId) return;
    const params = ctx.oidc.params ?? {};
    const resolved = store.resolve(params);
    if (!resolved) return;
    const accountId = ctx.oidc.session?.accountId ?? ctx.oidc.result?.login?.accountId
      ?? resolved.fhirUser;
    store.grants.set(grantId, {
      context: resolved.context,
      fhirUser: accountId,
      extra: resolved.extra,
      clientId: params.client_id,
      launch: resolved.launch,
    });
    log(`interactive consent: client=${params.client_id} user=${accountId} `
      + `launch=${resolved.launch ? 'ehr' : 'standalone'} context=${Object.keys(resolved.context).join(',') || '-'}`);
  };
}

/** Whether `url` is an http(s) URL on a loopback host (the apps the harness launches). */
function isLoopbackApp(url) {
  try {
    const u = new URL(url);
    return ['http:', 'https:'].includes(u.protocol)
      && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  } catch {
    return false;
  }
}

/** `GET /ehr?app=…[&patient=…]`: the "EHR" page that launches the app. */
export function createEhrHandler({ store, base, repo, defaultPatientId }) {
  return async function handleEhr(req, res) {
    req.resume();
    const url = new URL(req.url ?? '/', 'http://harness.invalid');
    const app = url.searchParams.get('app');
    if (req.method !== 'GET' || !app || !isLoopbackApp(app)) {
      sendJson(res, 400, { error: 'GET /ehr?app=<the app\'s launch URL on a loopback host>[&patient=<id>]' });
      return;
    }
    const patient = url.searchParams.get('patient') ?? defaultPatientId;
    let launch;
    try {
      launch = store.createLaunch({ patient });
    } catch (err) {
      sendJson(res, 400, { error: err.message });
      return;
    }
    const resource = await repo.readResource('Patient', patient).catch(() => undefined);
    const name = resource?.name?.[0];
    const display = name ? [...(name.given ?? []), name.family].filter(Boolean).join(' ') : patient;
    const target = new URL(app);
    target.searchParams.set('iss', base);
    target.searchParams.set('launch', launch);
    const html = '<!DOCTYPE html><html><head><meta charset="utf-8"><title>EHR</title></head><body>'
      + `<h1>EHR</h1><p>Patient: <span id="ehr-patient">${escapeHtml(display)}</span></p>`
      + `<p><a id="launch" href="${escapeHtml(target.toString())}">Launch the app</a></p></body></html>`;
    res.writeHead(200, {
      'Content-Type': 'text/html; charset=utf-8',
      'Cache-Control': 'no-store',
      'Content-Length': Buffer.byteLength(html),
    });
    res.end(html);
  };
}
