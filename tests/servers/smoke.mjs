#!/usr/bin/env node
// End-to-end smoke test of the harness: `node tests/servers/smoke.mjs`.
//
// Spawns harness.mjs with two backend clients (one with an inline RS384 JWK
// Set, one with an ES384 key published at a jwks_uri served from here),
// exercises the SMART Backend Services flow and the FHIR bearer checks, and
// prints `N passed, M failed` as its last line (exit 0 only when M = 0).

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import {
  SignJWT, calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair,
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
    check('stdout carries only the READY line', harness.stdoutLines.length === 1,
      JSON.stringify(harness.stdoutLines));

    const smart = await (await fetch(`${base}/.well-known/smart-configuration`)).json();
    check('smart-configuration lists the contract fields',
      smart.issuer === ready.issuer
        && smart.token_endpoint === tokenEndpoint
        && smart.jwks_uri === `${ready.issuer}/jwks`
        && JSON.stringify(smart.grant_types_supported) === '["client_credentials"]'
        && JSON.stringify(smart.token_endpoint_auth_methods_supported) === '["private_key_jwt"]'
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

  // Bad configurations exit non-zero with a message.
  const badConfig = join(dir, 'bad.json');
  writeFileSync(badConfig, JSON.stringify({ port: 0, clients: [{ client_id: 'x' }] }));
  const bad = await runToExit(['--config', badConfig]);
  check('bad config exits non-zero with a clear message',
    bad.code !== 0 && /bad config: clients\[0\]: exactly one of "jwks" or "jwks_uri"/.test(bad.err)
      && !bad.out.includes('HARNESS_READY'),
    `exit ${bad.code} ${bad.err}`);

  jwksServer.close();
  rmSync(dir, { recursive: true, force: true });
}

try {
  await main();
} catch (err) {
  check('smoke test ran to completion', false, err?.stack ?? String(err));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
