#!/usr/bin/env node
// Local SMART on FHIR server for the smart-fhir integration tests.
//
//   node tests/servers/harness.mjs --config CONFIG.json [--exit-on-stdin-eof]
//
// Prints exactly one line to stdout, `HARNESS_READY {json}`, once it serves
// requests; everything else goes to stderr. See README.md for the contract.

import { generateKeyPair, exportJWK, calculateJwkThumbprint } from 'jose';
import { createServer } from 'node:http';

import { createAdminHandler } from './lib/admin.mjs';
import { BulkExports } from './lib/bulk.mjs';
import { ConfigError, loadConfig } from './lib/config.mjs';
import {
  capabilityStatement, createFhirHandler, createFhirStore, loadFhirDefinitions, seedFhirStore,
} from './lib/fhir.mjs';
import { createTokenVerifier } from './lib/fhir_auth.mjs';
import { sendJson } from './lib/http_util.mjs';
import { createEhrHandler } from './lib/interactive.mjs';
import { createInteractionHandler, LaunchStore } from './lib/launch.mjs';
import {
  ACCESS_TOKEN_ALG, OIDC_SCOPES, SIGNING_ALGS, createProvider,
} from './lib/provider.mjs';
import { allowedScopes } from './lib/scopes.mjs';
import { smartConfiguration } from './lib/smart_config.mjs';
import { HarnessState } from './lib/state.mjs';

const HOST = '127.0.0.1';
const READY_PREFIX = 'HARNESS_READY ';

// stdout carries only the READY line: libraries that log with console.log /
// console.info (oidc-provider prints notices that way) go to stderr.
const toStderr = (...args) => console.error(...args);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;

const log = (msg) => process.stderr.write(`[harness] ${msg}\n`);

function usage(message) {
  process.stderr.write(`harness: ${message}\nusage: node harness.mjs --config CONFIG.json [--exit-on-stdin-eof]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { configPath: undefined, exitOnStdinEof: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--config') {
      opts.configPath = argv[i + 1];
      i += 1;
      if (!opts.configPath) usage('--config needs a path');
    } else if (arg.startsWith('--config=')) {
      opts.configPath = arg.slice('--config='.length);
    } else if (arg === '--exit-on-stdin-eof') {
      opts.exitOnStdinEof = true;
    } else {
      usage(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  if (!opts.configPath) usage('missing --config');
  return opts;
}

/** One signing key per algorithm (RS256 for access and ID tokens, ES384 for ID tokens). */
async function generateSigningKeys() {
  const privateJwks = [];
  const publicKeys = [];
  for (const alg of SIGNING_ALGS) {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const publicJwk = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(publicJwk);
    const common = { kid, alg, use: 'sig' };
    privateJwks.push({ ...(await exportJWK(privateKey)), ...common });
    publicKeys.push({ ...publicJwk, ...common });
  }
  return { privateJwks, publicJwks: { keys: publicKeys } };
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

/** Splits `/prefix`, `/prefix/rest` and `/prefix?q` (returns null otherwise). */
function stripPrefix(url, prefix) {
  if (url === prefix) return '';
  if (url.startsWith(`${prefix}/`)) return url.slice(prefix.length + 1);
  if (url.startsWith(`${prefix}?`)) return url.slice(prefix.length);
  return null;
}

async function main() {
  const startedAt = performance.now();
  const opts = parseArgs(process.argv.slice(2));

  let config;
  try {
    config = loadConfig(opts.configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`harness: bad config: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  // Key generation runs on the thread pool while the FHIR definitions load.
  const keyPromise = generateSigningKeys();
  loadFhirDefinitions();
  const { privateJwks, publicJwks } = await keyPromise;

  let handler = (req, res) => sendJson(res, 503, { error: 'starting' });
  const server = createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch((err) => {
      log(`internal error on ${req.method} ${req.url}: ${err?.stack ?? err}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal harness error' });
      else res.destroy();
    });
  });

  let port;
  try {
    port = await listen(server, config.port);
  } catch (err) {
    process.stderr.write(`harness: cannot listen on ${HOST}:${config.port}: ${err.message}\n`);
    process.exit(1);
  }

  const origin = `http://${HOST}:${port}`;
  const base = `${origin}/fhir`;
  const issuer = `${origin}/oidc`;
  const tokenEndpoint = `${issuer}/token`;
  const jwksUri = `${issuer}/jwks`;
  const authorizationEndpoint = `${issuer}/auth`;
  const introspectionEndpoint = `${issuer}/token/introspection`;
  const revocationEndpoint = `${issuer}/token/revocation`;
  const interactionBase = `${origin}/interaction`;
  const grantTypes = ['client_credentials', 'authorization_code'];

  const state = new HarnessState();
  const { repo, router } = createFhirStore({ base });
  const {
    patientIds, groupId, groupPatientIds, practitionerId,
  } = await seedFhirStore(repo);

  const launchStore = new LaunchStore({ base, defaultPatientId: patientIds[0], practitionerId });
  const readUser = async (ref) => {
    const m = /^([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(ref);
    return m ? repo.readResource(m[1], m[2]) : undefined;
  };
  // Read whenever a token is issued; POST /_harness/token-settings changes them.
  const tokenSettings = {
    accessTokenTtl: config.accessTokenTtl,
    refreshTokenTtl: config.refreshTokenTtl,
    idTokenTtl: config.idTokenTtl,
  };
  const provider = createProvider({
    issuer,
    fhirBase: base,
    otherResource: `${origin}/other-api`,
    clients: config.clients,
    tokenSettings,
    signingJwks: privateJwks,
    publicJwks,
    interactionBase,
    launchStore,
    readUser,
    state,
    log,
    interactive: config.interactive,
  });
  const providerCallback = provider.callback();
  const handleInteraction = createInteractionHandler({
    provider,
    store: launchStore,
    fhirBase: base,
    oidcScopes: new Set(OIDC_SCOPES),
    resourceScopes: new Set(allowedScopes()),
    log,
    sendJson,
  });

  const verifyBearer = createTokenVerifier({
    publicJwks, issuer, audience: base, algorithm: ACCESS_TOKEN_ALG, state,
  });
  const bulk = new BulkExports({
    base, origin, repo, state, verifyBearer, settings: config.bulk, log,
  });
  const handleFhir = createFhirHandler({
    base,
    repo,
    router,
    verifyBearer,
    bulk,
    smartConfiguration: smartConfiguration({
      issuer,
      jwksUri,
      tokenEndpoint,
      grantTypes,
      scopes: allowedScopes(),
      endpoints: {
        authorization_endpoint: authorizationEndpoint,
        introspection_endpoint: introspectionEndpoint,
        revocation_endpoint: revocationEndpoint,
      },
    }),
    capabilities: capabilityStatement({
      base, tokenEndpoint, authorizationEndpoint, introspectionEndpoint, revocationEndpoint,
    }),
    log,
  });
  const handleEhr = config.interactive
    ? createEhrHandler({
      store: launchStore, base, repo, defaultPatientId: patientIds[0],
    })
    : undefined;
  const handleAdmin = createAdminHandler({
    state, repo, bulk, launchStore, tokenSettings, log,
  });

  handler = async (req, res) => {
    const url = req.url ?? '/';
    const pathname = url.split('?')[0];
    let rest = stripPrefix(url, '/oidc');
    if (rest !== null) {
      // Mount oidc-provider under /oidc: it derives its mount path from
      // req.originalUrl minus req.url.
      req.originalUrl = url;
      req.url = `/${rest}`;
      return providerCallback(req, res);
    }
    rest = stripPrefix(url, '/fhir');
    if (rest !== null) {
      return handleFhir(req, res, rest);
    }
    if (pathname.startsWith('/_harness/')) {
      return handleAdmin(req, res, pathname);
    }
    if (pathname.startsWith('/bulk-files/')) {
      return bulk.handleFile(req, res, pathname);
    }
    if (handleEhr && pathname === '/ehr') {
      return handleEhr(req, res);
    }
    if (pathname.startsWith('/interaction/')) {
      return handleInteraction(req, res);
    }
    req.resume();
    return sendJson(res, 404, { error: 'not found', hint: 'paths: /fhir, /oidc, /interaction, /bulk-files, /_harness' });
  };

  let stopping = false;
  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why})`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (opts.exitOnStdinEof) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }

  const ready = {
    base,
    issuer,
    token_endpoint: tokenEndpoint,
    patient_ids: patientIds,
    port,
    group_id: groupId,
    group_patient_ids: groupPatientIds,
    bulk_files: `${origin}/bulk-files`,
    authorization_endpoint: authorizationEndpoint,
    practitioner_id: practitionerId,
    introspection_endpoint: introspectionEndpoint,
    revocation_endpoint: revocationEndpoint,
    ...(config.interactive ? { ehr: `${origin}/ehr` } : {}),
  };
  process.stdout.write(`${READY_PREFIX}${JSON.stringify(ready)}\n`);
  log(`ready on ${origin} in ${Math.round(performance.now() - startedAt)} ms `
    + `(${config.clients.length} client(s), access_token_ttl=${config.accessTokenTtl}s, `
    + `refresh_token_ttl=${config.refreshTokenTtl}s, id_token_ttl=${config.idTokenTtl}s, `
    + `bulk: poll_count=${config.bulk.pollCount} requires_access_token=${config.bulk.requiresAccessToken} `
    + `file_max=${config.bulk.fileMax})${config.interactive ? ', interactive' : ''}`);
}

main().catch((err) => {
  process.stderr.write(`harness: failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});
