#!/usr/bin/env node
// End-to-end smoke test of the harness: `node tests/servers/smoke.mjs`.
//
// Spawns harness.mjs with two backend clients (one with an inline RS384 JWK
// Set, one with an ES384 key published at a jwks_uri served from here) and
// four App Launch clients (public native, client_secret_basic,
// client_secret_post, private_key_jwt), exercises the SMART Backend Services
// flow, the FHIR bearer checks, the FHIR REST interactions, Bulk Data export
// and SMART App Launch (EHR and standalone launch driven headlessly through
// the auto-approving interaction, refresh rotation, ID tokens, introspection,
// revocation), and prints `N passed, M failed` as its last line (exit 0 only
// when M = 0). Check names cite the SMART-CHECKLIST items they exercise where
// there is one.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

import {
  SignJWT, calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, exportJWK,
  generateKeyPair, jwtVerify,
} from 'jose';

const HERE = dirname(fileURLToPath(import.meta.url));
const HARNESS = join(HERE, 'harness.mjs');
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const START_TIMEOUT_MS = 20_000;

let passed = 0;
let failed = 0;

const redact = (text) => String(text).replace(/eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*/g, '<jwt>');

function check(name, ok, detail = '') {
  if (ok) {
    passed += 1;
    console.log(`ok   - ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL - ${name}${detail ? `: ${redact(detail)}` : ''}`);
  }
}

const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

async function makeKey(alg) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return {
    alg, kid, privateKey, publicJwk: { ...jwk, kid, alg, use: 'sig' },
  };
}

async function clientAssertion({
  clientId, key, aud, exp = now() + 240, jti = randomUUID(), sub = clientId,
}) {
  return new SignJWT({ jti })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(sub)
    .setAudience(aud)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(key.privateKey);
}

async function tokenRequest(tokenEndpoint, assertion, scope, extra = {}) {
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_assertion_type: JWT_BEARER,
    client_assertion: assertion,
    ...extra,
  });
  if (scope !== undefined) form.set('scope', scope);
  const res = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form,
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function fhirGet(base, path, token) {
  const headers = { accept: 'application/fhir+json' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${base}/${path}`, { headers });
  return { status: res.status, headers: res.headers, body: await res.json().catch(() => null) };
}

/** Spawns the harness; resolves with { child, ready, startMs, stderr() }. */
function startHarness(configPath) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [HARNESS, '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no HARNESS_READY within ${START_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, START_TIMEOUT_MS);
    const lines = createInterface({ input: child.stdout });
    const stdoutLines = [];
    lines.on('line', (line) => {
      stdoutLines.push(line);
      if (line.startsWith('HARNESS_READY ')) {
        clearTimeout(timer);
        resolve({
          child,
          ready: JSON.parse(line.slice('HARNESS_READY '.length)),
          startMs: performance.now() - t0,
          stdoutLines,
          stderr: () => stderr,
        });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`harness exited with ${code} before ready; stderr:\n${stderr}`));
    });
  });
}

function stopHarness(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) {
      resolve(child.exitCode);
      return;
    }
    child.once('exit', (code, signal) => resolve(code ?? signal));
    child.kill('SIGTERM');
  });
}

function runToExit(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HARNESS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'smart-fhir-harness-'));
  const rs384 = await makeKey('RS384');
  const es384 = await makeKey('ES384');
  const stranger = await makeKey('RS384');

  // jwks_uri server for the second client.
  let jwksFetches = 0;
  const jwksServer = createServer((req, res) => {
    if (req.url === '/jwks.json') {
      jwksFetches += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [es384.publicJwk] }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => { jwksServer.listen(0, '127.0.0.1', r); });
  const jwksUri = `http://127.0.0.1:${jwksServer.address().port}/jwks.json`;

  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify({
    port: 0,
    clients: [
      { client_id: 'backend-rs384', jwks: { keys: [rs384.publicJwk] } },
      { client_id: 'backend-jku', jwks_uri: jwksUri },
      ...appLaunchClients(rs384),
    ],
  }));

  let harness;
  try {
    harness = await startHarness(configPath);
  } catch (err) {
    check('harness starts and prints HARNESS_READY', false, err.message);
    return;
  }
  const { ready, child } = harness;
  console.log(`harness start time (spawn -> HARNESS_READY): ${Math.round(harness.startMs)} ms`);
  const { base, token_endpoint: tokenEndpoint } = ready;
  let tokenPosts = 0;
  const byClient = { 'backend-rs384': 0, 'backend-jku': 0 };
  const getToken = async (clientId, key, scope, assertionOpts = {}, extra = {}) => {
    tokenPosts += 1;
    byClient[clientId] = (byClient[clientId] ?? 0) + 1;
    const assertion = await clientAssertion({
      clientId, key, aud: tokenEndpoint, ...assertionOpts,
    });
    return { ...(await tokenRequest(tokenEndpoint, assertion, scope, extra)), assertion };
  };

  try {
    // READY line and discovery documents.
    check('READY line has base/issuer/token_endpoint/port/patient_ids',
      base === `http://127.0.0.1:${ready.port}/fhir`
        && ready.issuer === `http://127.0.0.1:${ready.port}/oidc`
        && tokenEndpoint === `${ready.issuer}/token`
        && Array.isArray(ready.patient_ids) && ready.patient_ids.length === 5,
      JSON.stringify(ready));
    check('READY line has authorization/introspection/revocation endpoints and practitioner_id',
      ready.authorization_endpoint === `${ready.issuer}/auth`
        && ready.introspection_endpoint === `${ready.issuer}/token/introspection`
        && ready.revocation_endpoint === `${ready.issuer}/token/revocation`
        && typeof ready.practitioner_id === 'string' && ready.practitioner_id.length > 0,
      JSON.stringify(ready));
    check('stdout carries only the READY line', harness.stdoutLines.length === 1,
      JSON.stringify(harness.stdoutLines));

    const smart = await (await fetch(`${base}/.well-known/smart-configuration`)).json();
    check('smart-configuration lists the contract fields',
      smart.issuer === ready.issuer
        && smart.token_endpoint === tokenEndpoint
        && smart.jwks_uri === `${ready.issuer}/jwks`
        && JSON.stringify(smart.grant_types_supported) === '["client_credentials","authorization_code"]'
        && JSON.stringify(smart.token_endpoint_auth_methods_supported)
          === '["private_key_jwt","client_secret_basic","client_secret_post"]'
        && JSON.stringify(smart.token_endpoint_auth_signing_alg_values_supported)
          === '["RS384","ES384","RS256","ES256","PS384"]'
        && JSON.stringify(smart.code_challenge_methods_supported) === '["S256"]'
        && ['client-confidential-asymmetric', 'permission-v1', 'permission-v2']
          .every((c) => smart.capabilities.includes(c))
        && smart.scopes_supported.includes('system/Patient.rs')
        && smart.scopes_supported.includes('patient/*.cruds')
        && smart.scopes_supported.includes('user/Group.read'),
      JSON.stringify(smart).slice(0, 400));

    const oidcDiscovery = await (await fetch(`${ready.issuer}/.well-known/openid-configuration`)).json();
    check('oidc discovery agrees on issuer and token endpoint',
      oidcDiscovery.issuer === ready.issuer && oidcDiscovery.token_endpoint === tokenEndpoint);

    const metadata = await fhirGet(base, 'metadata');
    check('GET metadata needs no token', metadata.status === 200
      && metadata.body?.resourceType === 'CapabilityStatement');

    // Tokens with private_key_jwt for both clients.
    const patientId = ready.patient_ids[0];
    const scope = 'system/Patient.rs system/Observation.read';
    const rsTok = await getToken('backend-rs384', rs384, scope);
    check('RS384 inline-JWKS client gets a token', rsTok.status === 200
      && typeof rsTok.body?.access_token === 'string'
      && rsTok.body.token_type === 'Bearer'
      && rsTok.body.expires_in === 300
      && rsTok.body.scope === scope,
    JSON.stringify(rsTok.body));
    const claims = rsTok.body?.access_token ? decodeJwt(rsTok.body.access_token) : {};
    check('access token is a JWT with aud = FHIR base and the scope',
      claims.aud === base && claims.scope === scope && claims.client_id === 'backend-rs384'
        && claims.exp - claims.iat === 300,
      JSON.stringify(claims));

    const read1 = await fhirGet(base, `Patient/${patientId}`, rsTok.body?.access_token);
    check('RS384 token reads Patient/<id>', read1.status === 200 && read1.body?.id === patientId,
      `${read1.status} ${JSON.stringify(read1.body).slice(0, 200)}`);
    check('FHIR response headers: Content-Type, ETag, Last-Modified',
      read1.headers.get('content-type') === 'application/fhir+json'
        && read1.headers.get('etag') === `W/"${read1.body?.meta?.versionId}"`
        && read1.headers.get('last-modified') === new Date(read1.body?.meta?.lastUpdated).toUTCString(),
      JSON.stringify(Object.fromEntries(read1.headers)));

    const esTok = await getToken('backend-jku', es384, 'system/*.rs');
    check('ES384 jwks_uri client gets a token', esTok.status === 200
      && esTok.body?.scope === 'system/*.rs' && jwksFetches > 0,
    `${esTok.status} ${JSON.stringify(esTok.body)} jwks fetches=${jwksFetches}`);
    const read2 = await fhirGet(base, `Patient/${patientId}`, esTok.body?.access_token);
    check('ES384 token reads Patient/<id>', read2.status === 200 && read2.body?.id === patientId,
      `${read2.status}`);
    const search = await fhirGet(base, `Observation?subject=Patient/${patientId}`, esTok.body?.access_token);
    check('search Observation?subject= finds the seeded Observations',
      search.status === 200 && search.body?.total === 2, `${search.status} total=${search.body?.total}`);

    // Client assertion rules.
    const farExp = await getToken('backend-rs384', rs384, scope, { exp: now() + 600 });
    check('assertion with exp 10 min ahead is refused (invalid_client)',
      farExp.status === 401 && farExp.body?.error === 'invalid_client', JSON.stringify(farExp.body));

    const jti = randomUUID();
    const first = await getToken('backend-rs384', rs384, scope, { jti });
    const replay = await getToken('backend-rs384', rs384, scope, { jti });
    check('reused jti is refused (invalid_client)',
      first.status === 200 && replay.status === 401 && replay.body?.error === 'invalid_client',
      `${first.status} ${replay.status} ${JSON.stringify(replay.body)}`);

    const unknownKey = await getToken('backend-rs384', stranger, scope);
    check('assertion signed with an unregistered key is refused (invalid_client)',
      unknownKey.status === 401 && unknownKey.body?.error === 'invalid_client',
      JSON.stringify(unknownKey.body));

    const badSub = await getToken('backend-rs384', rs384, scope, { sub: 'someone-else' });
    check('assertion with sub != client_id is refused (invalid_client)',
      badSub.status === 401 && badSub.body?.error === 'invalid_client', JSON.stringify(badSub.body));

    // Scope enforcement.
    const noScope = await getToken('backend-rs384', rs384, 'not-a-smart-scope');
    check('unknown scopes are dropped (token without scope)',
      noScope.status === 200 && noScope.body?.scope === undefined, JSON.stringify(noScope.body));
    const forbidden = await fhirGet(base, `Patient/${patientId}`, noScope.body?.access_token);
    check('token without scope gets 403 insufficient_scope',
      forbidden.status === 403
        && /error="insufficient_scope"/.test(forbidden.headers.get('www-authenticate') ?? '')
        && forbidden.body?.resourceType === 'OperationOutcome',
      `${forbidden.status} ${forbidden.headers.get('www-authenticate')}`);
    const searchOnlyRead = await fhirGet(base, 'Encounter', rsTok.body?.access_token);
    check('search of a type outside the scopes gets 403', searchOnlyRead.status === 403);

    const writer = await getToken('backend-jku', es384, 'system/Patient.cu');
    const created = await fetch(`${base}/Patient`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${writer.body?.access_token}`,
        'content-type': 'application/fhir+json',
      },
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Smoke' }] }),
    });
    const createdBody = await created.json();
    check('create with system/Patient.cu -> 201 with Location and ETag',
      created.status === 201
        && created.headers.get('location')
          === `${base}/Patient/${createdBody.id}/_history/${createdBody.meta?.versionId}`
        && created.headers.get('etag') === `W/"${createdBody.meta?.versionId}"`,
      `${created.status} ${created.headers.get('location')}`);
    const readBack = await fhirGet(base, `Patient/${createdBody.id}`, writer.body?.access_token);
    check('system/Patient.cu cannot read (403)', readBack.status === 403, `${readBack.status}`);

    // Bearer failures.
    const missing = await fhirGet(base, `Patient/${patientId}`);
    check('missing token -> 401 invalid_token with OperationOutcome',
      missing.status === 401
        && /^Bearer error="invalid_token"/.test(missing.headers.get('www-authenticate') ?? '')
        && missing.body?.resourceType === 'OperationOutcome',
      `${missing.status} ${missing.headers.get('www-authenticate')}`);
    const garbage = await fhirGet(base, `Patient/${patientId}`, 'not.a.jwt');
    check('malformed token -> 401', garbage.status === 401);
    const otherApi = `http://127.0.0.1:${ready.port}/other-api`;
    const foreign = await getToken('backend-rs384', rs384, scope, {}, { resource: otherApi });
    const foreignClaims = foreign.body?.access_token ? decodeJwt(foreign.body.access_token) : {};
    const foreignRead = await fhirGet(base, `Patient/${patientId}`, foreign.body?.access_token);
    check('token for another audience -> 401 invalid_token',
      foreign.status === 200 && foreignClaims.aud === otherApi && foreignRead.status === 401
        && /audience/.test(foreignRead.headers.get('www-authenticate') ?? ''),
      `${foreign.status} aud=${foreignClaims.aud} ${foreignRead.status}`);
    const unknownResource = await getToken('backend-rs384', rs384, scope, {}, { resource: 'https://example.org/fhir' });
    check('unknown resource indicator -> invalid_target',
      unknownResource.status === 400 && unknownResource.body?.error === 'invalid_target',
      JSON.stringify(unknownResource.body));

    // Revocation.
    const revoke = await fetch(`http://127.0.0.1:${ready.port}/_harness/revoke-all`, { method: 'POST' });
    const afterRevoke = await fhirGet(base, `Patient/${patientId}`, rsTok.body?.access_token);
    check('after revoke-all the old token gets 401',
      revoke.status === 200 && afterRevoke.status === 401
        && /invalid_token/.test(afterRevoke.headers.get('www-authenticate') ?? ''),
      `${revoke.status} ${afterRevoke.status}`);
    const fresh = await getToken('backend-rs384', rs384, scope);
    const afterRevokeNew = await fhirGet(base, `Patient/${patientId}`, fresh.body?.access_token);
    check('a token issued after revoke-all works', afterRevokeNew.status === 200, `${afterRevokeNew.status}`);

    // Stats.
    const stats = await (await fetch(`http://127.0.0.1:${ready.port}/_harness/stats`)).json();
    check('stats count every token request, by client',
      stats.token_requests === tokenPosts
        && stats.token_requests_by_client['backend-rs384'] === byClient['backend-rs384']
        && stats.token_requests_by_client['backend-jku'] === byClient['backend-jku'],
      `${JSON.stringify(stats)} expected ${tokenPosts} ${JSON.stringify(byClient)}`);
    await fetch(`http://127.0.0.1:${ready.port}/_harness/reset`, { method: 'POST' });
    const statsAfterReset = await (await fetch(`http://127.0.0.1:${ready.port}/_harness/stats`)).json();
    check('reset zeroes the counters', statsAfterReset.token_requests === 0
      && Object.keys(statsAfterReset.token_requests_by_client).length === 0,
    JSON.stringify(statsAfterReset));

    // Large data set for paging and Bulk Data.
    const origin = `http://127.0.0.1:${ready.port}`;
    const seedStart = performance.now();
    const seedRes = await fetch(`${origin}/_harness/seed`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ patients: 1000, observationsPerPatient: 4 }),
    });
    const seeded = await seedRes.json();
    const seedMs = performance.now() - seedStart;
    check('POST /_harness/seed adds 1000 patients x 4 observations within 5 s',
      seedRes.status === 200 && seeded.patients === 1000 && seeded.observations === 4000
        && seeded.patient_ids?.length === 1000 && seeded.totals?.Patient >= 1005 && seedMs < 5000,
      `${seedRes.status} ${Math.round(seedMs)} ms ${JSON.stringify(seeded).slice(0, 200)}`);
    console.log(`seed time (1000 x 4): ${Math.round(seedMs)} ms`);
    const badSeed = await fetch(`${origin}/_harness/seed`, { method: 'POST', body: '{"patients": -1}' });
    check('POST /_harness/seed with a bad count -> 400', badSeed.status === 400, `${badSeed.status}`);

    const full = await getToken('backend-rs384', rs384, 'system/*.cruds');
    const tokenFor = (s) => getToken('backend-rs384', rs384, s);
    const restStart = performance.now();
    await restChecks({
      base, ready, token: full.body?.access_token, tokenFor,
    });
    console.log(`REST checks: ${Math.round(performance.now() - restStart)} ms`);
    const bulkStart = performance.now();
    await bulkChecks({
      base, ready, origin, token: full.body?.access_token, tokenFor,
    });
    console.log(`Bulk Data checks: ${Math.round(performance.now() - bulkStart)} ms`);
    const launchStart = performance.now();
    await appLaunchChecks({
      ready, origin, rs384, backendToken: full.body?.access_token,
    });
    console.log(`App Launch checks: ${Math.round(performance.now() - launchStart)} ms`);
  } finally {
    const code = await stopHarness(child);
    check('harness exits 0 on SIGTERM', code === 0, `exit ${code}\n${harness.stderr().slice(-2000)}`);
  }

  // Token expiry, with a second harness issuing 1-second tokens.
  const shortConfig = join(dir, 'short.json');
  writeFileSync(shortConfig, JSON.stringify({
    port: 0,
    access_token_ttl: 1,
    clients: [{ client_id: 'backend-rs384', jwks: { keys: [rs384.publicJwk] } }],
  }));
  const short = await startHarness(shortConfig);
  try {
    const assertion = await clientAssertion({
      clientId: 'backend-rs384', key: rs384, aud: short.ready.token_endpoint,
    });
    const tok = await tokenRequest(short.ready.token_endpoint, assertion, 'system/*.r');
    check('access_token_ttl is honoured', tok.status === 200 && tok.body?.expires_in === 1,
      JSON.stringify(tok.body));
    await sleep(2100);
    const expired = await fhirGet(short.ready.base, `Patient/${short.ready.patient_ids[0]}`, tok.body?.access_token);
    check('expired token -> 401 invalid_token', expired.status === 401
      && /expired/.test(expired.headers.get('www-authenticate') ?? ''),
    `${expired.status} ${expired.headers.get('www-authenticate')}`);
  } finally {
    await stopHarness(short.child);
  }

  // Bulk Data CONFIG knobs, with a third harness.
  const bulkConfig = join(dir, 'bulk.json');
  writeFileSync(bulkConfig, JSON.stringify({
    port: 0,
    bulk_poll_count: 0,
    bulk_file_max: 2,
    bulk_requires_access_token: false,
    clients: [{ client_id: 'backend-rs384', jwks: { keys: [rs384.publicJwk] } }],
  }));
  const knobs = await startHarness(bulkConfig);
  try {
    const kr = knobs.ready;
    check('READY line has group_id and group_patient_ids',
      typeof kr.group_id === 'string' && kr.group_patient_ids?.length === 3
        && kr.group_patient_ids.every((id) => kr.patient_ids.includes(id)),
      JSON.stringify(kr));
    const assertion = await clientAssertion({ clientId: 'backend-rs384', key: rs384, aud: kr.token_endpoint });
    const tok = (await tokenRequest(kr.token_endpoint, assertion, 'system/*.rs')).body?.access_token;
    const kick = await fhir(kr.base, 'GET', '$export?_type=Patient', { token: tok, headers: { prefer: 'respond-async' } });
    const status = await fhir('', 'GET', kick.headers.get('content-location') ?? `${kr.base}/x`, { token: tok });
    check('CONFIG bulk_poll_count=0, bulk_file_max=2, bulk_requires_access_token=false are honoured',
      kick.status === 202 && status.status === 200 && status.body?.requiresAccessToken === false
        && JSON.stringify(status.body?.output?.map((o) => o.count)) === '[2,2,1]',
      `${kick.status} ${show(status)}`);
  } finally {
    await stopHarness(knobs.child);
  }

  // Bad configurations exit non-zero with a message.
  const badConfig = join(dir, 'bad.json');
  writeFileSync(badConfig, JSON.stringify({ port: 0, clients: [{ client_id: 'x' }] }));
  const bad = await runToExit(['--config', badConfig]);
  check('bad config exits non-zero with a clear message',
    bad.code !== 0 && /bad config: clients\[0\]: exactly one of "jwks" or "jwks_uri"/.test(bad.err)
      && !bad.out.includes('HARNESS_READY'),
    `exit ${bad.code} ${bad.err}`);
  writeFileSync(badConfig, JSON.stringify({ port: 0, bulk_file_max: 0, clients: [] }));
  const badBulk = await runToExit(['--config', badConfig]);
  check('bad bulk_file_max exits 2 with a clear message',
    badBulk.code === 2 && /bad config: bulk_file_max/.test(badBulk.err), `exit ${badBulk.code} ${badBulk.err}`);

  writeFileSync(badConfig, JSON.stringify({
    port: 0, clients: [{ client_id: 'a', token_endpoint_auth_method: 'client_secret_basic', redirect_uris: ['https://a.example/cb'] }],
  }));
  const noSecret = await runToExit(['--config', badConfig]);
  writeFileSync(badConfig, JSON.stringify({
    port: 0, clients: [{ client_id: 'a', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'] }],
  }));
  const noRedirect = await runToExit(['--config', badConfig]);
  writeFileSync(badConfig, JSON.stringify({
    port: 0,
    clients: [{
      client_id: 'a', token_endpoint_auth_method: 'none', redirect_uris: ['https://a.example/cb'], id_token_signed_response_alg: 'HS256',
    }],
  }));
  const badAlg = await runToExit(['--config', badConfig]);
  check('bad App Launch clients exit 2: no client_secret, no redirect_uris, unsupported id_token alg',
    noSecret.code === 2 && /bad config: clients\[0\]\.client_secret/.test(noSecret.err)
      && noRedirect.code === 2 && /bad config: clients\[0\]\.redirect_uris/.test(noRedirect.err)
      && badAlg.code === 2 && /id_token_signed_response_alg/.test(badAlg.err),
    `${noSecret.code} ${noSecret.err} ${noRedirect.code} ${noRedirect.err} ${badAlg.code} ${badAlg.err}`);

  jwksServer.close();
  rmSync(dir, { recursive: true, force: true });
}


// ------------------------------------------------------------------ FHIR REST

/** One FHIR request: { status, headers, body (parsed JSON or null), text }. */
async function fhir(base, method, path, {
  token, body, headers = {}, contentType = 'application/fhir+json',
} = {}) {
  const h = { accept: 'application/fhir+json', ...headers };
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] = contentType;
  }
  const url = /^https?:/.test(path) ? path : `${base}/${path}`;
  const res = await fetch(url, { method, headers: h, body: payload });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return {
    status: res.status, headers: res.headers, body: json, text,
  };
}

/** GET without automatic decompression: { status, headers, body: Buffer }. */
function rawGet(url, headers = {}) {
  return new Promise((resolve, reject) => {
    httpGet(url, { headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

const show = (r) => `${r.status} ${r.text?.slice(0, 300)}`;
const issueCode = (r) => r.body?.issue?.[0]?.code;
const linkOf = (bundle, relation) => bundle?.link?.find((l) => l.relation === relation)?.url;
const mrn = (value) => ({ system: 'urn:smart-fhir:test:smoke', value });

async function restChecks({ base, ready, token, tokenFor }) {
  const call = (method, path, opts = {}) => fhir(base, method, path, { token, ...opts });
  const [p0, p1] = ready.patient_ids;

  // read / vread / 304 / 404 (SC-8.4, SC-8.5)
  const read = await call('GET', `Patient/${p1}`);
  const vid = read.body?.meta?.versionId;
  const etag = read.headers.get('etag');
  const notModified = await call('GET', `Patient/${p1}`, { headers: { 'if-none-match': etag } });
  check('read with If-None-Match of the current version -> 304 with ETag, no body',
    notModified.status === 304 && notModified.headers.get('etag') === etag && notModified.text === '',
    show(notModified));
  const modified = await call('GET', `Patient/${p1}`, { headers: { 'if-none-match': 'W/"other"' } });
  check('read with a stale If-None-Match -> 200', modified.status === 200, show(modified));
  const vread = await call('GET', `Patient/${p1}/_history/${vid}`);
  check('vread Patient/id/_history/vid -> 200 with ETag W/"vid"',
    vread.status === 200 && vread.body?.meta?.versionId === vid && vread.headers.get('etag') === `W/"${vid}"`,
    show(vread));
  const unknown = await call('GET', 'Patient/does-not-exist');
  check('read of an unknown id -> 404 OperationOutcome',
    unknown.status === 404 && unknown.body?.resourceType === 'OperationOutcome', show(unknown));

  // create / update (SC-8.6, SC-8.7, SC-8.13)
  const created = await call('POST', 'Patient', {
    body: { resourceType: 'Patient', id: 'client-chosen', identifier: [mrn('C-1')], birthDate: '1970-01-01' },
  });
  const cid = created.body?.id;
  const cvid = created.body?.meta?.versionId;
  check('create -> 201 with Location (…/_history/vid) and ETag; a client id is ignored',
    created.status === 201 && cid && cid !== 'client-chosen'
      && created.headers.get('location') === `${base}/Patient/${cid}/_history/${cvid}`
      && created.headers.get('etag') === `W/"${cvid}"`,
    show(created));
  const updated = await call('PUT', `Patient/${cid}`, {
    body: { ...created.body, gender: 'female' }, headers: { 'if-match': `W/"${cvid}"` },
  });
  check('update with the current If-Match -> 200 and a new version',
    updated.status === 200 && updated.body?.gender === 'female' && updated.body?.meta?.versionId !== cvid,
    show(updated));
  const conflict = await call('PUT', `Patient/${cid}`, {
    body: { ...created.body, gender: 'male' }, headers: { 'if-match': `W/"${cvid}"` },
  });
  check('update with a stale If-Match -> 412 OperationOutcome',
    conflict.status === 412 && conflict.body?.resourceType === 'OperationOutcome', show(conflict));
  const upsert = await call('PUT', 'Patient/smoke-upsert', { body: { resourceType: 'Patient', id: 'smoke-upsert' } });
  check('update of a new id (update as create) -> 201 with Location',
    upsert.status === 201 && upsert.headers.get('location')?.startsWith(`${base}/Patient/smoke-upsert/_history/`),
    show(upsert));
  const wrongId = await call('PUT', `Patient/${cid}`, { body: { resourceType: 'Patient', id: 'other' } });
  check('update whose body id differs from the URL -> 400', wrongId.status === 400, show(wrongId));
  const minimal = await call('POST', 'Patient', {
    body: { resourceType: 'Patient', identifier: [mrn('C-min')] }, headers: { prefer: 'return=minimal' },
  });
  check('create with Prefer: return=minimal -> 201, Location, empty body',
    minimal.status === 201 && minimal.text === '' && minimal.headers.get('location')?.startsWith(`${base}/Patient/`),
    show(minimal));

  // conditional create / update (SC-8.8, SC-8.14)
  const ine = (value) => ({ 'if-none-exist': `identifier=urn:smart-fhir:test:smoke|${value}` });
  const cc1 = await call('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [mrn('CC-1')] }, headers: ine('CC-1') });
  const cc2 = await call('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [mrn('CC-1')] }, headers: ine('CC-1') });
  check('conditional create: no match -> 201, one match -> 200 with the existing resource',
    cc1.status === 201 && cc2.status === 200 && cc2.body?.id === cc1.body?.id, `${show(cc1)} / ${show(cc2)}`);
  for (let i = 0; i < 2; i += 1) {
    await call('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [mrn('TWIN')] } });
  }
  const cc3 = await call('POST', 'Patient', { body: { resourceType: 'Patient', identifier: [mrn('TWIN')] }, headers: ine('TWIN') });
  check('conditional create with several matches -> 412', cc3.status === 412, show(cc3));
  const cuUrl = (value) => `Patient?identifier=${encodeURIComponent(`urn:smart-fhir:test:smoke|${value}`)}`;
  const cu1 = await call('PUT', cuUrl('CU-1'), { body: { resourceType: 'Patient', identifier: [mrn('CU-1')] } });
  const cu2 = await call('PUT', cuUrl('CU-1'), { body: { resourceType: 'Patient', identifier: [mrn('CU-1')], active: true } });
  const cu3 = await call('PUT', cuUrl('TWIN'), { body: { resourceType: 'Patient', identifier: [mrn('TWIN')] } });
  check('conditional update: none -> 201, one -> 200 (same id), several -> 412',
    cu1.status === 201 && cu2.status === 200 && cu2.body?.id === cu1.body?.id && cu3.status === 412,
    `${cu1.status} ${cu2.status} ${cu3.status}`);

  // patch (SC-8.9, SC-8.10)
  const jsonPatch = (ops, headers = {}) => call('PATCH', `Patient/${cid}`, {
    body: ops, contentType: 'application/json-patch+json', headers,
  });
  const jp = await jsonPatch([
    { op: 'test', path: '/birthDate', value: '1970-01-01' },
    { op: 'replace', path: '/birthDate', value: '1971-02-03' },
    { op: 'add', path: '/name', value: [{ family: 'Patched' }] },
  ]);
  check('JSON Patch (test, replace, add) -> 200 with the patched resource',
    jp.status === 200 && jp.body?.birthDate === '1971-02-03' && jp.body?.name?.[0]?.family === 'Patched'
      && jp.headers.get('etag') === `W/"${jp.body?.meta?.versionId}"`,
    show(jp));
  const jpFail = await jsonPatch([{ op: 'test', path: '/birthDate', value: '1900-01-01' }]);
  check('JSON Patch with a failing test op -> 422 OperationOutcome',
    jpFail.status === 422 && jpFail.body?.resourceType === 'OperationOutcome', show(jpFail));
  const jpBad = await jsonPatch({ op: 'replace' });
  check('malformed JSON Patch -> 400', jpBad.status === 400, show(jpBad));
  const jpStale = await jsonPatch([{ op: 'replace', path: '/gender', value: 'other' }], { 'if-match': `W/"${cvid}"` });
  check('PATCH with a stale If-Match -> 412', jpStale.status === 412, show(jpStale));
  const fpp = await call('PATCH', `Patient/${cid}`, {
    body: {
      resourceType: 'Parameters',
      parameter: [
        {
          name: 'operation',
          part: [
            { name: 'type', valueCode: 'replace' },
            { name: 'path', valueString: 'Patient.birthDate' },
            { name: 'value', valueDate: '1972-04-05' },
          ],
        },
        {
          name: 'operation',
          part: [
            { name: 'type', valueCode: 'add' },
            { name: 'path', valueString: 'Patient' },
            { name: 'name', valueString: 'telecom' },
            { name: 'value', valueContactPoint: { system: 'phone', value: '555-0100' } },
          ],
        },
        {
          name: 'operation',
          part: [
            { name: 'type', valueCode: 'replace' },
            { name: 'path', valueString: 'Patient.name[0].family' },
            { name: 'value', valueString: 'Fhirpath' },
          ],
        },
      ],
    },
  });
  check('FHIRPath Patch (replace, add to a list) -> 200',
    fpp.status === 200 && fpp.body?.birthDate === '1972-04-05' && fpp.body?.telecom?.[0]?.value === '555-0100'
      && fpp.body?.name?.[0]?.family === 'Fhirpath',
    show(fpp));
  const fppFail = await call('PATCH', `Patient/${cid}`, {
    body: {
      resourceType: 'Parameters',
      parameter: [{
        name: 'operation',
        part: [
          { name: 'type', valueCode: 'replace' },
          { name: 'path', valueString: 'Patient.deceasedBoolean' },
          { name: 'value', valueBoolean: true },
        ],
      }],
    },
  });
  check('FHIRPath Patch replacing a missing element -> 422', fppFail.status === 422, show(fppFail));
  const cpatch = await call('PATCH', cuUrl('C-1'), {
    body: [{ op: 'add', path: '/active', value: false }], contentType: 'application/json-patch+json',
  });
  check('conditional patch PATCH Patient?identifier=… -> 200',
    cpatch.status === 200 && cpatch.body?.id === cid && cpatch.body?.active === false, show(cpatch));

  // delete, 410, history with DELETE entries (SC-8.11, SC-8.12, SC-8.19)
  const del = await call('DELETE', `Patient/${cid}`);
  const gone = await call('GET', `Patient/${cid}`);
  const oldVersion = await call('GET', `Patient/${cid}/_history/${cvid}`);
  const delAgain = await call('DELETE', `Patient/${cid}`);
  check('delete -> 200; read -> 410; vread of an old version -> 200; delete again -> 200',
    del.status === 200 && gone.status === 410 && oldVersion.status === 200 && delAgain.status === 200,
    `${del.status} ${gone.status} ${oldVersion.status} ${delAgain.status}`);
  const hist = await call('GET', `Patient/${cid}/_history`);
  const first = hist.body?.entry?.[0];
  check('instance history: newest first, the deletion has request.method=DELETE and no resource',
    hist.status === 200 && hist.body?.type === 'history' && first?.request?.method === 'DELETE'
      && first?.resource === undefined && hist.body?.entry?.at(-1)?.request?.method === 'POST'
      && hist.body?.total === hist.body?.entry?.length && hist.body.total >= 6,
    show(hist));
  const cdel = await call('DELETE', cuUrl('CU-1'));
  const afterCdel = await call('GET', `Patient/${cu1.body?.id}`);
  check('conditional delete DELETE Patient?identifier=… -> 200, then 410', cdel.status === 200 && afterCdel.status === 410,
    `${cdel.status} ${afterCdel.status}`);

  // history type / system, _since, _count
  const since = new Date().toISOString();
  await call('POST', 'Observation', { body: { resourceType: 'Observation', status: 'final', code: { text: 'since' } } });
  const typeHist = await call('GET', 'Patient/_history?_count=3');
  check('type history GET Patient/_history?_count=3 -> 3 entries and a next link',
    typeHist.status === 200 && typeHist.body?.entry?.length === 3
      && typeHist.body.entry.every((e) => e.fullUrl?.startsWith(`${base}/Patient/`))
      && linkOf(typeHist.body, 'next')?.startsWith(`${base}/Patient/_history?`),
    show(typeHist));
  const sysHist = await call('GET', `_history?_since=${encodeURIComponent(since)}`);
  check('system history GET _history?_since=… -> only the newer write',
    sysHist.status === 200 && sysHist.body?.total === 1
      && sysHist.body.entry?.[0]?.resource?.code?.text === 'since'
      && sysHist.body.entry[0].request?.method === 'POST',
    show(sysHist));

  // search: GET, POST _search, system, compartment, paging (SC-8.16, SC-8.18)
  const defaultPage = await call('GET', 'Patient');
  check('search without _count -> pages of 20 with total, self and next links',
    defaultPage.status === 200 && defaultPage.body?.entry?.length === 20
      && defaultPage.body?.total > 20 && linkOf(defaultPage.body, 'self')?.startsWith(`${base}/Patient?`)
      && linkOf(defaultPage.body, 'next')?.startsWith(`${base}/Patient?`),
    `${defaultPage.status} entries=${defaultPage.body?.entry?.length} total=${defaultPage.body?.total}`);
  let next = `Observation?_count=1000&code=${encodeURIComponent('http://loinc.org|29463-7')}`;
  let pages = 0;
  let seen = 0;
  let total;
  const ids = new Set();
  while (next && pages < 20) {
    const page = await call('GET', next);
    if (page.status !== 200) break;
    pages += 1;
    total = page.body?.total;
    for (const e of page.body?.entry ?? []) ids.add(e.resource?.id);
    seen += page.body?.entry?.length ?? 0;
    next = linkOf(page.body, 'next');
    if (next && !next.startsWith(`${base}/Observation?`)) break;
  }
  check('paging: following next links visits every match once; the last page has no next',
    pages >= 5 && seen === total && ids.size === total && next === undefined,
    `pages=${pages} seen=${seen} unique=${ids.size} total=${total} next=${next}`);
  const viaPost = await call('POST', 'Patient/_search', {
    body: `identifier=${encodeURIComponent('urn:smart-fhir:test:mrn|MRN-1002')}`,
    contentType: 'application/x-www-form-urlencoded',
  });
  check('POST Patient/_search with a form body finds the Patient',
    viaPost.status === 200 && viaPost.body?.total === 1 && viaPost.body.entry?.[0]?.resource?.id === p1
      && viaPost.body.entry[0].search?.mode === 'match',
    show(viaPost));
  const sys = await call('GET', '?_type=Patient,Observation&_count=5');
  const onlyP = await call('GET', 'Patient?_summary=count');
  const onlyO = await call('GET', 'Observation?_summary=count');
  check('system search ?_type=Patient,Observation -> both types, total = sum, next link under the base',
    sys.status === 200 && sys.body?.total === onlyP.body?.total + onlyO.body?.total
      && sys.body?.entry?.length === 5 && linkOf(sys.body, 'next')?.startsWith(`${base}?`),
    `${show(sys)} P=${onlyP.body?.total} O=${onlyO.body?.total}`);
  const comp = await call('GET', `Patient/${p1}/Observation`);
  check('compartment search Patient/id/Observation -> that patient\'s 2 Observations',
    comp.status === 200 && comp.body?.total === 2
      && comp.body.entry?.every((e) => e.resource?.subject?.reference === `Patient/${p1}`),
    show(comp));
  const pair = `identifier=${encodeURIComponent('urn:smart-fhir:test:mrn|MRN-1001,urn:smart-fhir:test:mrn|MRN-1005')}`;
  const desc = await call('GET', `Patient?${pair}&_sort=-birthdate`);
  const asc = await call('GET', `Patient?${pair}&_sort=birthdate`);
  const order = (b) => b.body?.entry?.map((e) => e.resource?.birthDate).join(',');
  check('search honours _sort (ascending and descending)',
    order(desc) === '2004-09-09,1961-03-14' && order(asc) === '1961-03-14,2004-09-09',
    `${order(desc)} / ${order(asc)}`);

  // batch / transaction (SC-8.21)
  const batch = await call('POST', '', {
    body: {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: `Patient/${p1}` } },
        { resource: { resourceType: 'Patient', identifier: [mrn('B-1')] }, request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'GET', url: 'Patient/does-not-exist' } },
      ],
    },
  });
  const statuses = batch.body?.entry?.map((e) => e.response?.status?.split(' ')[0]);
  check('batch -> batch-response with one entry per request, in order (200, 201, 404)',
    batch.status === 200 && batch.body?.type === 'batch-response' && JSON.stringify(statuses) === '["200","201","404"]'
      && batch.body.entry[1].response.location?.startsWith('Patient/') && batch.body.entry[1].response.etag,
    show(batch));
  const urn = 'urn:uuid:7f1c0a52-64a4-4c42-9f0e-2f0d8a1c3b11';
  const tx = await call('POST', '', {
    body: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:0b4e9a3c-2a7d-4a8e-8d6c-3c1f6c2e9a01',
          resource: {
            resourceType: 'Observation', status: 'final', code: { text: 'tx' }, subject: { reference: urn },
          },
          request: { method: 'POST', url: 'Observation' },
        },
        { fullUrl: urn, resource: { resourceType: 'Patient', identifier: [mrn('TX-1')] }, request: { method: 'POST', url: 'Patient' } },
      ],
    },
  });
  const txPatient = tx.body?.entry?.[1]?.resource;
  const txObs = tx.body?.entry?.[0]?.resource;
  check('transaction resolves urn:uuid references and answers in request order',
    tx.status === 200 && tx.body?.type === 'transaction-response' && txObs?.resourceType === 'Observation'
      && txPatient?.resourceType === 'Patient' && txObs?.subject?.reference === `Patient/${txPatient?.id}`,
    show(tx));
  const txFail = await call('POST', '', {
    body: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Patient', identifier: [mrn('TX-ROLLBACK')] }, request: { method: 'POST', url: 'Patient' } },
        { request: { method: 'GET', url: 'Patient/does-not-exist' } },
      ],
    },
  });
  const rolledBack = await call('GET', cuUrl('TX-ROLLBACK'));
  check('a failing transaction -> 4xx OperationOutcome and nothing is kept',
    txFail.status >= 400 && txFail.status < 500 && txFail.body?.resourceType === 'OperationOutcome'
      && rolledBack.body?.total === 0,
    `${show(txFail)} kept=${rolledBack.body?.total}`);

  // operations
  const everything = await call('GET', `Patient/${p1}/$everything`);
  const types = everything.body?.entry?.map((e) => e.resource?.resourceType).sort();
  check('Patient/id/$everything -> the Patient and its Observations',
    everything.status === 200 && JSON.stringify(types) === '["Observation","Observation","Patient"]', show(everything));
  const valid = await call('POST', 'Patient/$validate', { body: { resourceType: 'Patient', gender: 'female' } });
  const noType = await call('POST', 'Patient/$validate', { body: { gender: 'female' } });
  const wrongType = await call('POST', 'Patient/$validate', { body: { resourceType: 'Observation' } });
  check('$validate: 200 OperationOutcome; errors for a missing or wrong resourceType',
    valid.status === 200 && valid.body?.issue?.every((i) => i.severity !== 'error')
      && noType.status === 200 && noType.body?.issue?.[0]?.severity === 'error'
      && wrongType.status === 200 && wrongType.body?.issue?.[0]?.severity === 'error',
    `${show(valid)} / ${show(noType)} / ${show(wrongType)}`);

  // content negotiation (SC-8.3)
  const xmlBody = await call('POST', 'Patient', { body: '<Patient/>', contentType: 'application/fhir+xml' });
  const xmlAccept = await call('GET', `Patient/${p1}`, { headers: { accept: 'application/fhir+xml' } });
  check('XML request body -> 415; Accept: application/fhir+xml only -> 406',
    xmlBody.status === 415 && xmlAccept.status === 406, `${xmlBody.status} ${xmlAccept.status}`);

  // scope letters of the new interactions
  const readOnly = (await tokenFor('system/Patient.r')).body?.access_token;
  const searchOnly = (await tokenFor('system/Patient.s system/Observation.s')).body?.access_token;
  const createOnly = (await tokenFor('system/Patient.c')).body?.access_token;
  const as = (tok, method, path, body) => fhir(base, method, path, { token: tok, body });
  const r = await Promise.all([
    as(readOnly, 'GET', 'Patient/_history'),
    as(searchOnly, 'GET', 'Patient/_history'),
    as(searchOnly, 'GET', '_history'),
    as(readOnly, 'GET', `Patient/${p1}/_history/${vid}`),
    as(searchOnly, 'GET', `Patient/${p1}/_history/${vid}`),
    as(readOnly, 'GET', `Patient/${p1}/$everything`),
    as(searchOnly, 'GET', `Patient/${p1}/$everything`),
    as(searchOnly, 'GET', `Patient/${p1}/Observation`),
    as(readOnly, 'GET', `Patient/${p1}/Observation`),
    as(createOnly, 'POST', 'Patient/$validate', { resourceType: 'Patient' }),
    as(searchOnly, 'POST', 'Patient/$validate', { resourceType: 'Patient' }),
    as(searchOnly, 'GET', '?_type=Patient,Observation'),
  ]);
  check('scopes: type history s, system history s on *, vread r, $everything r, compartment s, $validate r|c',
    JSON.stringify(r.map((x) => x.status))
      === JSON.stringify([403, 200, 403, 200, 403, 200, 403, 200, 403, 200, 403, 200]),
    JSON.stringify(r.map((x) => x.status)));
}

// ------------------------------------------------------------------ Bulk Data

async function pollStatus(statusUrl, token, max = 10) {
  const polls = [];
  for (let i = 0; i < max; i += 1) {
    const res = await fhir('', 'GET', statusUrl, { token });
    polls.push(res);
    if (res.status !== 202) break;
  }
  return polls;
}

const ndjsonLines = (text) => text.split('\n').slice(0, -1).map((l) => JSON.parse(l));

async function bulkChecks({
  base, ready, origin, token, tokenFor,
}) {
  const admin = async (path, body) => (await fetch(`${origin}/_harness/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })).json();
  const asyncHeaders = { prefer: 'respond-async' };
  const kickoff = (path, opts = {}) => fhir(base, opts.body ? 'POST' : 'GET', path, {
    token, ...opts, headers: { ...asyncHeaders, ...(opts.headers ?? {}) },
  });

  const noPrefer = await fhir(base, 'GET', '$export', { token });
  check('kick-off without Prefer: respond-async -> 400 OperationOutcome (SC-7.5)',
    noPrefer.status === 400 && noPrefer.body?.resourceType === 'OperationOutcome', show(noPrefer));
  const badFormat = await kickoff('$export?_outputFormat=text/csv');
  check('kick-off with an unsupported _outputFormat -> 400', badFormat.status === 400, show(badFormat));
  const narrow = (await tokenFor('system/Patient.rs')).body?.access_token;
  const outOfScope = await fhir(base, 'GET', '$export?_type=Observation', { token: narrow, headers: asyncHeaders });
  check('kick-off with a _type outside the token\'s scopes -> 403 insufficient_scope',
    outOfScope.status === 403 && /insufficient_scope/.test(outOfScope.headers.get('www-authenticate') ?? ''),
    show(outOfScope));

  const totals = {};
  for (const type of ['Patient', 'Observation']) {
    totals[type] = (await fhir(base, 'GET', `${type}?_summary=count`, { token })).body?.total;
  }
  const kick = await kickoff('$export?_type=Patient,Observation&_typeFilter=Observation%3Fstatus%3Dfinal');
  const statusUrl = kick.headers.get('content-location');
  check('system kick-off -> 202 with an absolute Content-Location under the base (SC-7.9)',
    kick.status === 202 && statusUrl?.startsWith(`${base}/$export-status/`), show(kick));
  const polls = await pollStatus(statusUrl, token);
  const inProgress = polls.slice(0, -1);
  const done = polls.at(-1);
  check('status: 202 with Retry-After: 1 and X-Progress for the first 2 polls (SC-7.12)',
    inProgress.length === 2 && inProgress.every((p) => p.headers.get('retry-after') === '1'
      && /^\d+%$/.test(p.headers.get('x-progress') ?? '')),
    polls.map((p) => `${p.status} ${p.headers.get('x-progress')}`).join(', '));
  const manifest = done.body;
  const counts = {};
  for (const o of manifest?.output ?? []) counts[o.type] = (counts[o.type] ?? 0) + o.count;
  check('status: 200 with Expires and the manifest (SC-7.15)',
    done.status === 200 && !Number.isNaN(Date.parse(done.headers.get('expires') ?? ''))
      && manifest?.request === `${base}/$export?_type=Patient,Observation&_typeFilter=Observation%3Fstatus%3Dfinal`
      && manifest?.requiresAccessToken === true && !Number.isNaN(Date.parse(manifest?.transactionTime))
      && Array.isArray(manifest?.deleted) && Array.isArray(manifest?.error) && manifest.error.length === 0
      && counts.Patient === totals.Patient && counts.Observation === totals.Observation,
    `${done.status} ${JSON.stringify(manifest)?.slice(0, 400)} totals=${JSON.stringify(totals)}`);
  const obsFiles = manifest?.output?.filter((o) => o.type === 'Observation') ?? [];
  check('a type with more than 1000 resources is split into files of at most 1000 lines',
    obsFiles.length === Math.ceil(counts.Observation / 1000) && obsFiles.every((o) => o.count <= 1000)
      && obsFiles.every((o) => o.url.startsWith(`${origin}/bulk-files/`)),
    JSON.stringify(obsFiles.map((o) => o.count)));

  const file = obsFiles[0];
  const plain = await rawGet(file.url, { authorization: `Bearer ${token}`, 'accept-encoding': 'identity' });
  const plainText = plain.body.toString('utf8');
  const lines = ndjsonLines(plainText);
  check('file download: application/fhir+ndjson, one resource per line, trailing newline (SC-7.19, SC-7.21)',
    plain.status === 200 && plain.headers['content-type'] === 'application/fhir+ndjson'
      && plain.headers['content-encoding'] === undefined && plainText.endsWith('\n')
      && lines.length === file.count && lines.every((l) => l.resourceType === 'Observation'),
    `${plain.status} ${JSON.stringify(plain.headers)} lines=${lines.length}`);
  const zipped = await rawGet(file.url, { authorization: `Bearer ${token}`, 'accept-encoding': 'gzip, deflate' });
  let unzipped = '';
  try {
    unzipped = gunzipSync(zipped.body).toString('utf8');
  } catch (err) {
    unzipped = `gunzip failed: ${err.message}`;
  }
  check('file download with Accept-Encoding: gzip -> Content-Encoding: gzip, same lines (SC-7.20)',
    zipped.status === 200 && zipped.headers['content-encoding'] === 'gzip' && unzipped === plainText
      && zipped.body.length < plain.body.length,
    `${zipped.status} ${zipped.headers['content-encoding']} ${zipped.body.length}/${plain.body.length}`);
  const noAuth = await rawGet(file.url, { 'accept-encoding': 'identity' });
  check('file download without a token when requiresAccessToken is true -> 401',
    noAuth.status === 401 && /invalid_token/.test(noAuth.headers['www-authenticate'] ?? ''), `${noAuth.status}`);

  const kickoffs = await admin('bulk-kickoffs');
  const recorded = kickoffs.kickoffs?.find((k) => statusUrl?.endsWith(k.export_id));
  check('the kick-off is recorded with its ignored _typeFilter (SC-7.7)',
    JSON.stringify(recorded?.parameters?._typeFilter) === '["Observation?status=final"]'
      && JSON.stringify(recorded?.parameters?._type) === '["Patient","Observation"]' && recorded?.method === 'GET',
    JSON.stringify(recorded));

  // Patient-level export with a type without data and an unknown type (SC-7.16).
  const partial = await kickoff('Patient/$export?_type=Patient,Condition,NoSuchType');
  const partialDone = (await pollStatus(partial.headers.get('content-location'), token)).at(-1);
  const errorFile = partialDone.body?.error?.[0];
  const errorText = errorFile ? (await rawGet(errorFile.url, { authorization: `Bearer ${token}` })).body.toString() : '';
  const errorLines = errorText ? ndjsonLines(errorText) : [];
  check('a _type with no data or unknown -> error[] with an OperationOutcome NDJSON file (partial success)',
    partial.status === 202 && partialDone.status === 200 && partialDone.body?.output?.length >= 1
      && errorFile?.type === 'OperationOutcome' && errorFile?.count === 2
      && errorLines.length === 2 && errorLines.every((l) => l.resourceType === 'OperationOutcome'),
    `${partialDone.status} ${JSON.stringify(partialDone.body?.error)} ${errorText.slice(0, 200)}`);

  // Group export, POST Parameters with patient, _elements.
  const group = await kickoff(`Group/${ready.group_id}/$export?_elements=id,name`);
  const groupDone = (await pollStatus(group.headers.get('content-location'), token)).at(-1);
  const gcounts = Object.fromEntries((groupDone.body?.output ?? []).map((o) => [o.type, o.count]));
  const groupPatients = groupDone.body?.output?.find((o) => o.type === 'Patient');
  const gLines = groupPatients
    ? ndjsonLines((await rawGet(groupPatients.url, { authorization: `Bearer ${token}` })).body.toString()) : [];
  check('Group/id/$export exports the members and their Observations; _elements keeps top-level elements',
    group.status === 202 && gcounts.Patient === ready.group_patient_ids.length
      && gcounts.Observation === 2 * ready.group_patient_ids.length
      && gLines.every((p) => ready.group_patient_ids.includes(p.id) && p.name && !p.birthDate
        && p.meta?.tag?.some((t) => t.code === 'SUBSETTED')),
    `${group.status} ${JSON.stringify(gcounts)} ${JSON.stringify(gLines[0])}`);
  const post = await kickoff('Patient/$export', {
    body: {
      resourceType: 'Parameters',
      parameter: [
        { name: '_type', valueString: 'Patient,Observation' },
        { name: 'patient', valueReference: { reference: `Patient/${ready.patient_ids[3]}` } },
        { name: '_outputFormat', valueString: 'application/fhir+ndjson' },
        { name: 'includeAssociatedData', valueCode: 'LatestProvenanceResources' },
      ],
    },
  });
  const postDone = (await pollStatus(post.headers.get('content-location'), token)).at(-1);
  const pcounts = Object.fromEntries((postDone.body?.output ?? []).map((o) => [o.type, o.count]));
  check('POST kick-off with a Parameters body and patient -> only that patient\'s data (SC-7.4)',
    post.status === 202 && pcounts.Patient === 1 && pcounts.Observation === 2
      && postDone.body?.request === `${base}/Patient/$export`,
    `${show(post)} ${JSON.stringify(postDone.body)?.slice(0, 300)}`);
  const getPatient = await kickoff(`Patient/$export?patient=Patient/${ready.patient_ids[0]}`);
  check('patient in a GET kick-off -> 400', getPatient.status === 400, show(getPatient));

  // Transient failures and rate limiting (SC-7.13, SC-7.14).
  await admin('bulk-settings', { failNextPolls: 1, rateLimitNextPolls: 1, pollCount: 1 });
  const flaky = await kickoff('$export?_type=Patient');
  const flakyUrl = flaky.headers.get('content-location');
  const limited = await fhir('', 'GET', flakyUrl, { token });
  const failed = await fhir('', 'GET', flakyUrl, { token });
  const rest = await pollStatus(flakyUrl, token);
  check('rateLimitNextPolls -> 429 with Retry-After; failNextPolls -> 500 OperationOutcome code transient; then 202, 200',
    limited.status === 429 && limited.headers.get('retry-after') === '1'
      && failed.status === 500 && issueCode(failed) === 'transient'
      && JSON.stringify(rest.map((p) => p.status)) === '[202,200]',
    `${limited.status} ${failed.status} ${issueCode(failed)} ${rest.map((p) => p.status)}`);

  // Cancel (SC-7.23).
  const cancelled = await fhir('', 'DELETE', flakyUrl, { token });
  const afterCancel = await fhir('', 'GET', flakyUrl, { token });
  const fileAfterCancel = await rawGet(rest.at(-1).body?.output?.[0]?.url ?? `${origin}/bulk-files/x/1.ndjson`, {
    authorization: `Bearer ${token}`,
  });
  check('DELETE on the status URL -> 202; later status and file requests -> 404',
    cancelled.status === 202 && afterCancel.status === 404 && fileAfterCancel.status === 404,
    `${cancelled.status} ${afterCancel.status} ${fileAfterCancel.status}`);

  // requiresAccessToken=false: files without a token; the counters tell (SC-7.18, P6).
  await admin('reset', {});
  const settings = await admin('bulk-settings', { requiresAccessToken: false, pollCount: 0 });
  const open = await kickoff('$export?_type=Patient');
  const openDone = await fhir('', 'GET', open.headers.get('content-location'), { token });
  const openFile = openDone.body?.output?.[0]?.url;
  const anon = await rawGet(openFile, {});
  const withToken = await rawGet(openFile, { authorization: `Bearer ${token}` });
  const stats = await admin('stats');
  check('requiresAccessToken=false: manifest says so, files need no token, stats count Authorization',
    settings.requiresAccessToken === false && openDone.status === 200 && openDone.body?.requiresAccessToken === false
      && anon.status === 200 && withToken.status === 200
      && stats.bulk_file_requests_without_auth === 1 && stats.bulk_file_requests_with_auth === 1
      && stats.bulk_file_requests === 2 && stats.bulk_kickoff_requests === 1,
    `${openDone.status} ${anon.status} ${withToken.status} ${JSON.stringify(stats)}`);
  await admin('bulk-settings', { requiresAccessToken: true, pollCount: 2 });
}

// ------------------------------------------------------------------ App Launch

const CB_PUBLIC = 'http://127.0.0.1:1/callback';
const CB_BASIC = 'https://app.example/basic/callback';
const CB_POST = 'https://app.example/post/callback';
const CB_JWT = 'https://app.example/jwt/callback';
const SECRET_BASIC = 'basic-secret-0123456789';
const SECRET_POST = 'post-secret-0123456789';

/** The App Launch clients of the smoke CONFIG. */
function appLaunchClients(rs384) {
  return [
    {
      client_id: 'app-public',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      redirect_uris: [CB_PUBLIC],
      grant_types: ['authorization_code', 'refresh_token'],
    },
    {
      client_id: 'app-basic',
      token_endpoint_auth_method: 'client_secret_basic',
      client_secret: SECRET_BASIC,
      redirect_uris: [CB_BASIC],
      id_token_signed_response_alg: 'ES384',
    },
    {
      client_id: 'app-post',
      token_endpoint_auth_method: 'client_secret_post',
      client_secret: SECRET_POST,
      redirect_uris: [CB_POST],
    },
    {
      client_id: 'app-jwt',
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [rs384.publicJwk] },
      redirect_uris: [CB_JWT],
      grant_types: ['authorization_code', 'refresh_token'],
    },
  ];
}

function pkcePair() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** Stores the name=value of every Set-Cookie (path, domain and expiry ignored). */
function keepCookies(jar, res) {
  for (const line of res.headers.getSetCookie()) {
    const pair = line.split(';')[0];
    const eq = pair.indexOf('=');
    if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
}

const isAt = (url, redirectUri) => {
  const u = new URL(url);
  const r = new URL(redirectUri);
  return u.origin === r.origin && u.pathname === r.pathname;
};

/**
 * Runs an authorization request the way a headless test client does: GET (or
 * POST form) to the authorization endpoint, then follow every 303 with GET,
 * sending back all cookies received so far, until the Location is the
 * redirect URI (not fetched). Returns { chain: ["303 url", ...], callback:
 * URLSearchParams | undefined, last: { status, text } }.
 */
async function authorize(ready, params, { method = 'GET', jar = new Map(), cookies = true } = {}) {
  const chain = [];
  let url = ready.authorization_endpoint;
  let init = { method, redirect: 'manual', headers: {} };
  const form = new URLSearchParams(params);
  if (method === 'GET') url = `${url}?${form}`;
  else {
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
    init.body = form.toString();
  }
  for (let hop = 0; hop < 8; hop += 1) {
    if (cookies && jar.size > 0) init.headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, init);
    if (cookies) keepCookies(jar, res);
    chain.push(`${res.status} ${url.split('?')[0]}`);
    const location = res.headers.get('location');
    if (res.status < 300 || res.status > 399 || !location) {
      return { chain, last: { status: res.status, text: await res.text() } };
    }
    await res.arrayBuffer();
    const next = new URL(location, url).href;
    if (isAt(next, params.redirect_uri)) {
      return { chain, callback: new URL(next).searchParams, location: next };
    }
    url = next;
    init = { method: 'GET', redirect: 'manual', headers: {} };
  }
  return { chain, last: { status: 0, text: 'too many redirects' } };
}

/** Client authentication for a token / introspection / revocation request. */
async function clientAuth(client, endpoint, rs384) {
  switch (client) {
    case 'app-basic':
      return {
        headers: { authorization: `Basic ${Buffer.from(`${client}:${SECRET_BASIC}`).toString('base64')}` },
        form: {},
      };
    case 'app-post':
      return { headers: {}, form: { client_id: client, client_secret: SECRET_POST } };
    case 'app-jwt':
      return {
        headers: {},
        form: {
          client_assertion_type: JWT_BEARER,
          client_assertion: await clientAssertion({ clientId: client, key: rs384, aud: endpoint }),
        },
      };
    default:
      return { headers: {}, form: { client_id: client } };
  }
}

/** POSTs a form with the client's authentication; { status, body }. */
async function postForm(endpoint, client, form, rs384) {
  const auth = await clientAuth(client, endpoint, rs384);
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...auth.headers },
    body: new URLSearchParams({ ...auth.form, ...form }),
  });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, body, text };
}

async function appLaunchChecks({
  ready, origin, rs384, backendToken,
}) {
  const { base } = ready;
  const admin = async (path, body) => {
    const res = await fetch(`${origin}/_harness/${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: await res.json() };
  };
  const jwks = createRemoteJWKSet(new URL(`${ready.issuer}/jwks`));
  const verifyIdToken = (idToken, clientId) => jwtVerify(idToken ?? '', jwks, {
    issuer: ready.issuer, audience: clientId, algorithms: ['RS256', 'ES384'],
  }).then((r) => r.payload, (err) => ({ error: err.code ?? err.message }));
  const token = (client, form) => postForm(ready.token_endpoint, client, form, rs384);
  const launchParams = (client, redirectUri, scope, extra = {}) => {
    const pkce = pkcePair();
    return {
      pkce,
      params: {
        response_type: 'code',
        client_id: client,
        redirect_uri: redirectUri,
        scope,
        state: randomBytes(16).toString('base64url'),
        aud: base,
        code_challenge: pkce.challenge,
        code_challenge_method: 'S256',
        ...extra,
      },
    };
  };
  const exchange = (client, callback, redirectUri, verifier) => token(client, {
    grant_type: 'authorization_code', code: callback?.get('code') ?? 'none', redirect_uri: redirectUri, code_verifier: verifier,
  });
  await admin('reset', {});

  // Discovery.
  const smart = await (await fetch(`${base}/.well-known/smart-configuration`)).json();
  const caps = ['launch-ehr', 'launch-standalone', 'authorize-post', 'client-public', 'client-confidential-symmetric',
    'client-confidential-asymmetric', 'sso-openid-connect', 'context-ehr-patient', 'context-ehr-encounter',
    'context-standalone-patient', 'context-banner', 'context-style', 'permission-offline', 'permission-online',
    'permission-patient', 'permission-user', 'permission-v1', 'permission-v2'];
  check('smart-configuration advertises App Launch (SC-1.7, SC-1.8)',
    smart.authorization_endpoint === ready.authorization_endpoint
      && smart.introspection_endpoint === ready.introspection_endpoint
      && smart.revocation_endpoint === ready.revocation_endpoint
      && JSON.stringify(smart.response_types_supported) === '["code"]'
      && caps.every((c) => smart.capabilities.includes(c)) && smart.capabilities.length === caps.length
      && ['openid', 'fhirUser', 'launch', 'launch/patient', 'launch/encounter', 'offline_access', 'online_access',
        'patient/*.rs', 'user/*.rs'].every((sc) => smart.scopes_supported.includes(sc)),
    JSON.stringify({ ...smart, scopes_supported: smart.scopes_supported?.length }));
  const oidcConfig = await (await fetch(`${ready.issuer}/.well-known/openid-configuration`)).json();
  check('openid-configuration: jwks_uri, authorization endpoint, RS256 and ES384 ID tokens, fhirUser claim (SC-4.34)',
    oidcConfig.jwks_uri === `${ready.issuer}/jwks` && oidcConfig.authorization_endpoint === ready.authorization_endpoint
      && ['RS256', 'ES384'].every((a) => oidcConfig.id_token_signing_alg_values_supported?.includes(a))
      && oidcConfig.claims_supported?.includes('fhirUser')
      && JSON.stringify(oidcConfig.code_challenge_methods_supported) === '["S256"]'
      && oidcConfig.authorization_response_iss_parameter_supported === true,
    JSON.stringify(oidcConfig).slice(0, 400));
  const metadata = await fhir(base, 'GET', 'metadata');
  const oauthUris = metadata.body?.rest?.[0]?.security?.extension?.[0]?.extension ?? [];
  check('CapabilityStatement oauth-uris: authorize, token, introspect, revoke (SC-1.16)',
    JSON.stringify(oauthUris.map((e) => e.url)) === '["authorize","token","introspect","revoke"]'
      && oauthUris[0].valueUri === ready.authorization_endpoint, JSON.stringify(oauthUris));

  // Standalone launch, public native client, loopback redirect URI on another port.
  const redirectPublic = 'http://127.0.0.1:49152/callback';
  const pub = launchParams('app-public', redirectPublic,
    'openid fhirUser launch/patient patient/*.rs offline_access', { nonce: 'nonce-1' });
  const jar = new Map();
  const pubFlow = await authorize(ready, pub.params, { jar });
  const uid = pubFlow.chain[1]?.split('/').pop();
  check('standalone launch: 303 /oidc/auth -> 303 /interaction/<uid> -> 303 /oidc/auth/<uid> -> redirect_uri (SC-4.5)',
    JSON.stringify(pubFlow.chain) === JSON.stringify([
      `303 ${ready.authorization_endpoint}`, `303 ${origin}/interaction/${uid}`, `303 ${ready.authorization_endpoint}/${uid}`,
    ]) && ['_interaction', '_interaction_resume', '_session'].every((c) => jar.has(c)),
    `${JSON.stringify(pubFlow.chain)} ${pubFlow.last?.text?.slice(0, 200)} cookies=${[...jar.keys()]}`);
  const cb = pubFlow.callback;
  check('callback carries code, the same state and iss = the issuer (SC-4.13, SC-4.17)',
    !!cb?.get('code') && cb.get('state') === pub.params.state && cb.get('iss') === ready.issuer,
    String(pubFlow.location));
  check('native client: a loopback redirect URI matches on any port (RFC 8252 §7.3)',
    !!cb && isAt(pubFlow.location, redirectPublic), String(pubFlow.location));
  const pubTok = await exchange('app-public', cb, redirectPublic, pub.pkce.verifier);
  const pubAt = pubTok.body?.access_token ? decodeJwt(pubTok.body.access_token) : {};
  check('public client code exchange: JWT access token for the FHIR base, refresh token, patient context (SC-4.18–4.20, SC-4.28)',
    pubTok.status === 200 && pubAt.aud === base && pubAt.iss === ready.issuer && pubAt.client_id === 'app-public'
      && pubTok.body.scope === 'openid fhirUser launch/patient patient/*.rs offline_access'
      && typeof pubTok.body.refresh_token === 'string' && pubTok.body.patient === ready.patient_ids[0]
      && pubTok.body.token_type === 'Bearer' && pubTok.body.expires_in === 300,
    `${pubTok.status} ${JSON.stringify({ ...pubTok.body, access_token: pubAt })}`);
  const pubId = await verifyIdToken(pubTok.body?.id_token, 'app-public');
  check('id_token: RS256 signed by /oidc/jwks, iss, aud, nonce, fhirUser = the patient (patient-facing standalone) (SC-4.33–4.35)',
    decodeProtectedHeader(pubTok.body?.id_token ?? 'e30.e30.')?.alg === 'RS256'
      && pubId.nonce === 'nonce-1' && pubId.fhirUser === `${base}/Patient/${ready.patient_ids[0]}`
      && pubId.sub === `Patient/${ready.patient_ids[0]}` && typeof pubId.exp === 'number',
    JSON.stringify(pubId));
  const pubRead = await fhir(base, 'GET', `Patient/${ready.patient_ids[0]}`, { token: pubTok.body?.access_token });
  check('patient/*.rs App Launch token reads the launch patient', pubRead.status === 200, show(pubRead));
  const reused = await exchange('app-public', cb, redirectPublic, pub.pkce.verifier);
  const afterReuse = await fhir(base, 'GET', `Patient/${ready.patient_ids[0]}`, { token: pubTok.body?.access_token });
  check('a code used twice -> invalid_grant, and the tokens issued for it are revoked (P4)',
    reused.status === 400 && reused.body?.error === 'invalid_grant' && afterReuse.status === 401,
    `${reused.status} ${reused.text} ${afterReuse.status}`);

  // Refresh rotation (fresh flow: the grant above was revoked).
  const again = launchParams('app-public', redirectPublic, 'launch/patient patient/*.rs offline_access');
  const againFlow = await authorize(ready, again.params);
  const againTok = await exchange('app-public', againFlow.callback, redirectPublic, again.pkce.verifier);
  const rt1 = againTok.body?.refresh_token;
  const refresh = (client, rt, extra = {}) => token(client, { grant_type: 'refresh_token', refresh_token: rt ?? 'none', ...extra });
  const r1 = await refresh('app-public', rt1);
  check('refresh: new access and refresh tokens, launch context again (SC-4.29, SC-4.31)',
    againTok.status === 200 && r1.status === 200 && typeof r1.body?.refresh_token === 'string'
      && r1.body.refresh_token !== rt1 && r1.body.access_token !== againTok.body.access_token
      && r1.body.patient === ready.patient_ids[0] && r1.body.scope === 'launch/patient patient/*.rs offline_access',
    `${againTok.status} ${r1.status} ${JSON.stringify(Object.keys(r1.body ?? {}))}`);
  const narrow = await refresh('app-public', r1.body?.refresh_token, { scope: 'patient/*.rs' });
  check('refresh with a narrower scope -> that scope', narrow.status === 200 && narrow.body?.scope === 'patient/*.rs',
    narrow.text);
  const old = await refresh('app-public', rt1);
  const newest = await refresh('app-public', narrow.body?.refresh_token);
  const rotatedRead = await fhir(base, 'GET', `Patient/${ready.patient_ids[0]}`, { token: narrow.body?.access_token });
  check('rotation: an old refresh token -> invalid_grant; the whole grant is revoked with it (SC-4.32, P12)',
    old.status === 400 && old.body?.error === 'invalid_grant'
      && newest.status === 400 && newest.body?.error === 'invalid_grant' && rotatedRead.status === 401,
    `${old.status} ${old.text} ${newest.status} ${rotatedRead.status}`);

  // EHR launch, client_secret_basic, ES384 ID token.
  const ctx = {
    patient: ready.patient_ids[2],
    encounter: 'enc-42',
    fhirContext: [{ reference: 'Encounter/enc-42' }, { reference: 'DiagnosticReport/dr-1', role: 'https://example.org/role' }],
    need_patient_banner: false,
    smart_style_url: `${origin}/style.json`,
    intent: 'reconcile-medications',
    tenant: 'tenant-1',
    extra: { authorization_details: [{ type: 'smart_on_fhir', locations: [base] }], 'x-extension': 7 },
  };
  const launch = await admin('launch', ctx);
  check('POST /_harness/launch -> {"launch": id, "iss": base}',
    launch.status === 200 && typeof launch.body.launch === 'string' && launch.body.iss === base, JSON.stringify(launch));
  const badLaunch = await admin('launch', { patient: 'Patient/x' });
  check('POST /_harness/launch with a bad field -> 400', badLaunch.status === 400, JSON.stringify(badLaunch));
  const ehr = launchParams('app-basic', CB_BASIC, 'launch openid fhirUser user/*.rs offline_access',
    { launch: launch.body.launch, nonce: 'nonce-2' });
  const ehrFlow = await authorize(ready, ehr.params);
  const ehrTok = await exchange('app-basic', ehrFlow.callback, CB_BASIC, ehr.pkce.verifier);
  const b = ehrTok.body ?? {};
  check('EHR launch (client_secret_basic): every launch context member in the token response (SC-4.2, SC-4.20–4.22)',
    ehrTok.status === 200 && b.patient === ctx.patient && b.encounter === ctx.encounter
      && JSON.stringify(b.fhirContext) === JSON.stringify(ctx.fhirContext) && b.need_patient_banner === false
      && b.smart_style_url === ctx.smart_style_url && b.intent === ctx.intent && b.tenant === ctx.tenant
      && b.authorization_details?.[0]?.type === 'smart_on_fhir' && b['x-extension'] === 7
      && typeof b.refresh_token === 'string',
    `${ehrTok.status} ${JSON.stringify({ ...b, access_token: '…', id_token: '…', refresh_token: '…' })}`);
  const ehrId = await verifyIdToken(b.id_token, 'app-basic');
  check('id_token ES384 for a client registered with it; fhirUser = the seeded Practitioner (SC-4.34, SC-4.35)',
    decodeProtectedHeader(b.id_token ?? 'e30.e30.')?.alg === 'ES384' && ehrId.nonce === 'nonce-2'
      && ehrId.fhirUser === `${base}/Practitioner/${ready.practitioner_id}`,
    JSON.stringify(ehrId));
  const ehrRefresh = await refresh('app-basic', b.refresh_token);
  check('refresh response of an EHR launch repeats the launch context (SC-4.31)',
    ehrRefresh.status === 200 && ehrRefresh.body?.encounter === ctx.encounter && ehrRefresh.body?.tenant === ctx.tenant,
    ehrRefresh.text);
  const wrongSecret = await fetch(ready.token_endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from('app-basic:wrong').toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: ehrRefresh.body?.refresh_token ?? 'x' }),
  });
  check('client_secret_basic with a wrong secret -> 401 invalid_client (SC-2.15)',
    wrongSecret.status === 401 && (await wrongSecret.json()).error === 'invalid_client', `${wrongSecret.status}`);

  // Authorization errors come back to the redirect URI (SC-4.14).
  const errorOf = async (params, opts) => {
    const flow = await authorize(ready, params, opts);
    return `${flow.callback?.get('error')}|${flow.callback?.get('state') === params.state}`;
  };
  const withState = (p) => ({ ...p.params });
  const unknownLaunch = await errorOf(withState(launchParams('app-basic', CB_BASIC, 'launch openid', { launch: 'nope' })));
  const wrongAud = await errorOf({ ...withState(launchParams('app-basic', CB_BASIC, 'launch/patient')), aud: `${origin}/other-api` });
  const noAud = withState(launchParams('app-basic', CB_BASIC, 'launch/patient'));
  delete noAud.aud;
  const missingAud = await errorOf(noAud);
  const noPkce = withState(launchParams('app-basic', CB_BASIC, 'launch/patient'));
  delete noPkce.code_challenge;
  delete noPkce.code_challenge_method;
  const missingPkce = await errorOf(noPkce);
  const plainPkce = await errorOf({ ...withState(launchParams('app-basic', CB_BASIC, 'launch/patient')), code_challenge_method: 'plain' });
  check('error redirects with state: unknown launch, wrong aud, missing aud, no PKCE, plain PKCE -> invalid_request (SC-4.14, P8, P4)',
    [unknownLaunch, wrongAud, missingAud, missingPkce, plainPkce].every((e) => e === 'invalid_request|true'),
    JSON.stringify({
      unknownLaunch, wrongAud, missingAud, missingPkce, plainPkce,
    }));
  const noneFresh = await errorOf({ ...withState(launchParams('app-public', redirectPublic, 'patient/*.rs')), prompt: 'none' });
  const noneSession = await errorOf({ ...withState(launchParams('app-basic', CB_BASIC, 'patient/*.rs')), prompt: 'none' },
    { jar: new Map(jar) });
  const noneNative = await errorOf({ ...withState(launchParams('app-public', redirectPublic, 'patient/*.rs')), prompt: 'none' },
    { jar: new Map(jar) });
  check('prompt=none -> login_required without a session; with one consent_required (native: interaction_required)',
    noneFresh === 'login_required|true' && noneSession === 'consent_required|true' && noneNative === 'interaction_required|true',
    `${noneFresh} ${noneSession} ${noneNative}`);
  const webOtherPort = await authorize(ready, withState(launchParams('app-basic', 'https://app.example:8443/basic/callback', 'launch/patient')));
  check('an unregistered redirect URI (also another port of a web client) -> 400 page, no redirect (P10)',
    webOtherPort.last?.status === 400 && !webOtherPort.callback, JSON.stringify(webOtherPort));
  const badVerifier = launchParams('app-basic', CB_BASIC, 'launch/patient patient/*.rs');
  const badVerifierFlow = await authorize(ready, badVerifier.params);
  const badVerifierTok = await exchange('app-basic', badVerifierFlow.callback, CB_BASIC, pkcePair().verifier);
  check('code exchange with the wrong code_verifier -> invalid_grant (SC-4.8)',
    badVerifierTok.status === 400 && badVerifierTok.body?.error === 'invalid_grant', badVerifierTok.text);

  // Without cookies the interaction cannot continue.
  const noCookies = await authorize(ready, launchParams('app-basic', CB_BASIC, 'launch/patient').params, { cookies: false });
  check('a client that drops the cookies stops at the interaction with 400 invalid_request',
    noCookies.last?.status === 400 && /cookies/.test(noCookies.last.text) && noCookies.chain.length === 2,
    JSON.stringify(noCookies));

  // client_secret_post, POSTed authorization request, standalone context, online_access.
  const standalone = await admin('standalone-context', {
    patient: ready.patient_ids[1], encounter: 'enc-7', need_patient_banner: true,
  });
  const postParams = launchParams('app-post', CB_POST, 'openid fhirUser launch/patient launch/encounter user/*.rs offline_access');
  const postFlow = await authorize(ready, postParams.params, { method: 'POST' });
  const postTok = await exchange('app-post', postFlow.callback, CB_POST, postParams.pkce.verifier);
  const postId = await verifyIdToken(postTok.body?.id_token, 'app-post');
  check('authorize-post + client_secret_post + standalone context (launch/patient, launch/encounter) + offline_access (SC-4.10, SC-2.21)',
    standalone.status === 200 && postFlow.chain[0] === `303 ${ready.authorization_endpoint}`
      && postTok.status === 200 && postTok.body?.patient === ready.patient_ids[1] && postTok.body?.encounter === 'enc-7'
      && postTok.body?.need_patient_banner === true && typeof postTok.body?.refresh_token === 'string'
      && postId.fhirUser === `${base}/Practitioner/${ready.practitioner_id}`,
    `${JSON.stringify(postFlow.chain)} ${postTok.status} ${JSON.stringify({ ...postTok.body, access_token: '…', id_token: postId })}`);
  const noEncounter = launchParams('app-post', CB_POST, 'launch/patient user/*.rs');
  const noEncounterTok = await exchange('app-post', (await authorize(ready, noEncounter.params)).callback, CB_POST, noEncounter.pkce.verifier);
  check('standalone without launch/encounter gets no encounter; without offline/online_access no refresh token (SC-4.23, SC-4.28)',
    noEncounterTok.status === 200 && noEncounterTok.body?.patient === ready.patient_ids[1]
      && noEncounterTok.body?.encounter === undefined && noEncounterTok.body?.refresh_token === undefined,
    noEncounterTok.text);
  await admin('standalone-context', { patient: ready.patient_ids[0] });

  // A reused cookie jar (session) and another user.
  const jarLaunch = await admin('launch', { patient: ready.patient_ids[3], fhirUser: `Patient/${ready.patient_ids[3]}` });
  const jarParams = launchParams('app-public', redirectPublic, 'launch openid fhirUser patient/*.rs',
    { launch: jarLaunch.body.launch, nonce: 'nonce-3' });
  const jarFlow = await authorize(ready, jarParams.params, { jar });
  const jarTok = await exchange('app-public', jarFlow.callback, redirectPublic, jarParams.pkce.verifier);
  const jarId = await verifyIdToken(jarTok.body?.id_token, 'app-public');
  check('a reused session with another user (launch fhirUser) still completes; the id_token names the new user',
    jarTok.status === 200 && jarId.fhirUser === `${base}/Patient/${ready.patient_ids[3]}`
      && jarTok.body?.patient === ready.patient_ids[3],
    `${JSON.stringify(jarFlow.chain)} ${jarTok.status} ${JSON.stringify(jarId)}`);

  // private_key_jwt App Launch client: exchange and refresh with assertions.
  const jwtParams = launchParams('app-jwt', CB_JWT, 'openid profile launch/patient patient/Patient.r online_access');
  const jwtTok = await exchange('app-jwt', (await authorize(ready, jwtParams.params)).callback, CB_JWT, jwtParams.pkce.verifier);
  const jwtRefresh = await refresh('app-jwt', jwtTok.body?.refresh_token);
  check('private_key_jwt App Launch client: code exchange and refresh with client assertions; online_access (SC-4.18, SC-4.28, SC-4.29)',
    jwtTok.status === 200 && jwtRefresh.status === 200 && jwtRefresh.body?.patient === ready.patient_ids[0]
      && jwtTok.body?.scope === 'openid profile launch/patient patient/Patient.r online_access',
    `${jwtTok.status} ${jwtTok.text.slice(0, 200)} ${jwtRefresh.status}`);
  const jwtId = await verifyIdToken(jwtTok.body?.id_token, 'app-jwt');
  check('openid profile, patient-facing (no fhirUser scope): id_token with the v1 profile claim and the patient\'s name (SC-4.36)',
    jwtId.profile === `${base}/Patient/${ready.patient_ids[0]}` && jwtId.name === 'Ada Ingram'
      && jwtId.fhirUser === undefined, JSON.stringify(jwtId));

  // Introspection (SC-6.1–6.4).
  const introspect = (client, tok) => postForm(ready.introspection_endpoint, client, { token: tok ?? 'x' }, rs384);
  const liveAt = ehrRefresh.body?.access_token;
  const i1 = await introspect('app-basic', liveAt);
  check('introspection of a JWT access token: active, scope, client_id, exp, sub, launch context, fhirUser (SC-6.3)',
    i1.status === 200 && i1.body?.active === true && i1.body.client_id === 'app-basic'
      && i1.body.scope === 'launch openid fhirUser user/*.rs offline_access' && typeof i1.body.exp === 'number'
      && i1.body.patient === ctx.patient && i1.body.encounter === ctx.encounter
      && i1.body.fhirUser === `${base}/Practitioner/${ready.practitioner_id}`
      && i1.body.sub === `Practitioner/${ready.practitioner_id}` && i1.body.iss === ready.issuer,
    i1.text);
  const i2 = await introspect('app-basic', ehrRefresh.body?.refresh_token);
  check('introspection of a refresh token: active with the launch context', i2.status === 200 && i2.body?.active === true
    && i2.body.patient === ctx.patient && i2.body.client_id === 'app-basic', i2.text);
  const i3 = await introspect('app-basic', 'not-a-token');
  const i4 = await introspect('app-public', liveAt);
  const i5 = await introspect('app-jwt', backendToken);
  check('introspection: unknown token, or a public client asking about another client\'s token -> {"active": false} (SC-6.4)',
    JSON.stringify(i3.body) === '{"active":false}' && JSON.stringify(i4.body) === '{"active":false}'
      && i5.body?.active === true && i5.body.client_id === 'backend-rs384',
    `${i3.text} ${i4.text} ${i5.text}`);

  // Revocation (SC-6.5, SC-6.6).
  const revoke = (client, tok, hint) => postForm(ready.revocation_endpoint, client,
    { token: tok ?? 'x', ...(hint ? { token_type_hint: hint } : {}) }, rs384);
  const before = await fhir(base, 'GET', `Patient/${ctx.patient}`, { token: liveAt });
  const rv1 = await revoke('app-basic', liveAt, 'access_token');
  const after = await fhir(base, 'GET', `Patient/${ctx.patient}`, { token: liveAt });
  const i6 = await introspect('app-basic', liveAt);
  check('revoking an access token -> 200; /fhir then answers 401 and introspection inactive',
    before.status === 200 && rv1.status === 200 && after.status === 401 && i6.body?.active === false,
    `${before.status} ${rv1.status} ${rv1.text} ${after.status} ${i6.text}`);
  const rv2 = await revoke('app-basic', ehrRefresh.body?.refresh_token, 'refresh_token');
  const refreshAfterRevoke = await refresh('app-basic', ehrRefresh.body?.refresh_token);
  const rv3 = await revoke('app-basic', 'unknown-token');
  check('revoking a refresh token -> 200, refresh then invalid_grant; an unknown token -> 200 (RFC 7009)',
    rv2.status === 200 && refreshAfterRevoke.status === 400 && refreshAfterRevoke.body?.error === 'invalid_grant'
      && rv3.status === 200,
    `${rv2.status} ${refreshAfterRevoke.status} ${refreshAfterRevoke.text} ${rv3.status}`);

  // Stats and token settings.
  const stats = (await admin('stats')).body;
  check('stats count code exchanges and refresh requests by client',
    stats.code_exchanges_by_client['app-public'] === 4 && stats.refresh_requests_by_client['app-public'] === 4
      && stats.code_exchanges_by_client['app-basic'] === 2 && stats.refresh_requests_by_client['app-basic'] === 3
      && stats.code_exchanges_by_client['app-jwt'] === 1 && stats.refresh_requests_by_client['app-jwt'] === 1,
    JSON.stringify(stats));
  const ttl = await admin('token-settings', { accessTokenTtl: 120 });
  const shortParams = launchParams('app-public', redirectPublic, 'patient/*.rs');
  const shortTok = await exchange('app-public', (await authorize(ready, shortParams.params)).callback, redirectPublic,
    shortParams.pkce.verifier);
  await admin('token-settings', { accessTokenTtl: 300 });
  const badTtl = await admin('token-settings', { accessTokenTtl: 0 });
  check('POST /_harness/token-settings changes the lifetime of tokens issued afterwards',
    ttl.status === 200 && ttl.body.accessTokenTtl === 120 && shortTok.body?.expires_in === 120
      && badTtl.status === 400, `${JSON.stringify(ttl)} ${shortTok.text.slice(0, 100)} ${badTtl.status}`);
}

try {
  await main();
} catch (err) {
  check('smoke test ran to completion', false, err?.stack ?? String(err));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
