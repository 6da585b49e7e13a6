// Loading and validation of the harness CONFIG file.
//
// The CONFIG format is part of the contract with the Rust integration tests
// (see ../README.md). Anything unexpected is rejected with a ConfigError whose
// message names the offending field, so that a mistake on the Rust side shows
// up as a clear start-up failure rather than as a confusing test failure.

import { readFileSync } from 'node:fs';

/** Signing algorithms accepted for `private_key_jwt` client assertions. */
export const CLIENT_ASSERTION_ALGS = Object.freeze(['RS384', 'ES384', 'RS256', 'ES256', 'PS384']);

/** Default lifetime of issued access tokens, in seconds. */
export const DEFAULT_ACCESS_TOKEN_TTL = 300;

/** Default lifetimes of refresh tokens and ID tokens, in seconds. */
export const DEFAULT_REFRESH_TOKEN_TTL = 86400;
export const DEFAULT_ID_TOKEN_TTL = 3600;

/** Client authentication methods a CONFIG client may use. */
export const CLIENT_AUTH_METHODS = Object.freeze([
  'private_key_jwt', 'client_secret_basic', 'client_secret_post', 'none',
]);

/** Grant types a CONFIG client may use. */
export const CLIENT_GRANT_TYPES = Object.freeze(['client_credentials', 'authorization_code', 'refresh_token']);

/** Signing algorithms for ID tokens (`id_token_signed_response_alg`); the first is the default. */
export const ID_TOKEN_ALGS = Object.freeze(['RS256', 'ES384']);

/** Bulk Data defaults: status polls answered 202 before the manifest, file size, token rule. */
export const DEFAULT_BULK_POLL_COUNT = 2;
export const DEFAULT_BULK_FILE_MAX = 1000;
export const DEFAULT_BULK_REQUIRES_ACCESS_TOKEN = true;

const TOP_LEVEL_KEYS = new Set([
  'port', 'clients', 'access_token_ttl', 'refresh_token_ttl', 'id_token_ttl',
  'bulk_poll_count', 'bulk_requires_access_token', 'bulk_file_max', 'interactive',
]);
const CLIENT_KEYS = new Set([
  'client_id', 'jwks', 'jwks_uri', 'token_endpoint_auth_method', 'client_secret', 'redirect_uris',
  'grant_types', 'id_token_signed_response_alg', 'application_type',
]);
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

/** A CONFIG file that cannot be used. */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

function fail(message) {
  throw new ConfigError(message);
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function checkKeys(object, allowed, where) {
  for (const key of Object.keys(object)) {
    if (!allowed.has(key)) {
      fail(`${where}: unknown field "${key}" (allowed: ${[...allowed].join(', ')})`);
    }
  }
}

function validateJwks(jwks, where) {
  if (!isPlainObject(jwks) || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    fail(`${where}: must be a JWK Set object with a non-empty "keys" array`);
  }
  jwks.keys.forEach((jwk, i) => {
    const at = `${where}.keys[${i}]`;
    if (!isPlainObject(jwk) || typeof jwk.kty !== 'string') {
      fail(`${at}: must be a JWK object with a "kty" member`);
    }
    for (const member of PRIVATE_JWK_MEMBERS) {
      if (member in jwk) {
        fail(`${at}: must be a public key (found private member "${member}")`);
      }
    }
  });
}

function validateJwksUri(value, where) {
  if (typeof value !== 'string') {
    fail(`${where}: must be a string`);
  }
  let url;
  try {
    url = new URL(value);
  } catch {
    fail(`${where}: not an absolute URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    fail(`${where}: must be an http(s) URL`);
  }
}

function validateRedirectUris(value, where, applicationType) {
  if (!Array.isArray(value) || value.length === 0) {
    fail(`${where}: must be a non-empty array of absolute http(s) URLs`);
  }
  value.forEach((uri, i) => {
    const at = `${where}[${i}]`;
    if (typeof uri !== 'string') fail(`${at}: must be a string`);
    let url;
    try {
      url = new URL(uri);
    } catch {
      fail(`${at}: not an absolute URL: ${JSON.stringify(uri)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`${at}: must be an http(s) URL`);
    if (uri.includes('#')) fail(`${at}: must not contain a fragment`);
    if (applicationType === 'native' && url.protocol === 'http:'
      && !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
      fail(`${at}: a native client's http redirect URI must be a loopback address`);
    }
  });
}

function validateClient(client, i, seen) {
  const where = `clients[${i}]`;
  if (!isPlainObject(client)) {
    fail(`${where}: must be an object`);
  }
  checkKeys(client, CLIENT_KEYS, where);
  if (typeof client.client_id !== 'string' || client.client_id.length === 0) {
    fail(`${where}.client_id: must be a non-empty string`);
  }
  if (seen.has(client.client_id)) {
    fail(`${where}.client_id: duplicate client_id ${JSON.stringify(client.client_id)}`);
  }
  seen.add(client.client_id);

  const method = client.token_endpoint_auth_method ?? 'private_key_jwt';
  if (!CLIENT_AUTH_METHODS.includes(method)) {
    fail(`${where}.token_endpoint_auth_method: must be one of ${CLIENT_AUTH_METHODS.join(', ')}`);
  }

  const hasJwks = client.jwks !== undefined;
  const hasJwksUri = client.jwks_uri !== undefined;
  if (method === 'private_key_jwt') {
    if (hasJwks === hasJwksUri) {
      fail(`${where}: exactly one of "jwks" or "jwks_uri" is required`);
    }
    if (hasJwks) {
      validateJwks(client.jwks, `${where}.jwks`);
    } else {
      validateJwksUri(client.jwks_uri, `${where}.jwks_uri`);
    }
  } else if (hasJwks || hasJwksUri) {
    fail(`${where}: "jwks"/"jwks_uri" are only for token_endpoint_auth_method private_key_jwt`);
  }

  const symmetric = method === 'client_secret_basic' || method === 'client_secret_post';
  if (symmetric) {
    if (typeof client.client_secret !== 'string' || client.client_secret.length === 0) {
      fail(`${where}.client_secret: a non-empty string is required for ${method}`);
    }
  } else if (client.client_secret !== undefined) {
    fail(`${where}.client_secret: only for client_secret_basic / client_secret_post`);
  }

  const applicationType = client.application_type ?? 'web';
  if (!['web', 'native'].includes(applicationType)) {
    fail(`${where}.application_type: must be "web" or "native"`);
  }

  const hasRedirects = client.redirect_uris !== undefined;
  const grantTypes = client.grant_types
    ?? (hasRedirects ? ['authorization_code', 'refresh_token'] : ['client_credentials']);
  if (!Array.isArray(grantTypes) || grantTypes.length === 0
    || !grantTypes.every((g) => CLIENT_GRANT_TYPES.includes(g))
    || new Set(grantTypes).size !== grantTypes.length) {
    fail(`${where}.grant_types: must be a non-empty list of distinct values among ${CLIENT_GRANT_TYPES.join(', ')}`);
  }
  if (grantTypes.includes('client_credentials') && method === 'none') {
    fail(`${where}: client_credentials needs client authentication (not "none")`);
  }
  const appLaunch = grantTypes.includes('authorization_code');
  if (appLaunch) {
    validateRedirectUris(client.redirect_uris, `${where}.redirect_uris`, applicationType);
  } else if (hasRedirects) {
    fail(`${where}.redirect_uris: only for clients with the authorization_code grant type`);
  }

  const idTokenAlg = client.id_token_signed_response_alg ?? ID_TOKEN_ALGS[0];
  if (!ID_TOKEN_ALGS.includes(idTokenAlg)) {
    fail(`${where}.id_token_signed_response_alg: must be one of ${ID_TOKEN_ALGS.join(', ')}`);
  }

  return {
    client_id: client.client_id,
    token_endpoint_auth_method: method,
    grant_types: [...grantTypes],
    application_type: applicationType,
    ...(hasJwks ? { jwks: client.jwks } : {}),
    ...(hasJwksUri ? { jwks_uri: client.jwks_uri } : {}),
    ...(symmetric ? { client_secret: client.client_secret } : {}),
    ...(appLaunch ? {
      redirect_uris: [...client.redirect_uris],
      id_token_signed_response_alg: idTokenAlg,
    } : {}),
  };
}

function positiveSeconds(raw, key, fallback) {
  const value = raw[key] ?? fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    fail(`${key}: must be a positive integer number of seconds`);
  }
  return value;
}

/**
 * Validates a parsed CONFIG object and returns a normalised copy:
 * `{ port, clients: [{client_id, token_endpoint_auth_method, grant_types,
 *    application_type, jwks | jwks_uri | client_secret, redirect_uris?,
 *    id_token_signed_response_alg?}], accessTokenTtl, refreshTokenTtl, idTokenTtl,
 *    bulk: { pollCount, requiresAccessToken, fileMax } }`.
 */
export function validateConfig(raw) {
  if (!isPlainObject(raw)) {
    fail('the top level must be a JSON object');
  }
  checkKeys(raw, TOP_LEVEL_KEYS, 'config');

  const port = raw.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail('port: must be an integer in 0..65535 (0 = pick a free port)');
  }

  const ttl = positiveSeconds(raw, 'access_token_ttl', DEFAULT_ACCESS_TOKEN_TTL);
  const refreshTokenTtl = positiveSeconds(raw, 'refresh_token_ttl', DEFAULT_REFRESH_TOKEN_TTL);
  const idTokenTtl = positiveSeconds(raw, 'id_token_ttl', DEFAULT_ID_TOKEN_TTL);

  const pollCount = raw.bulk_poll_count ?? DEFAULT_BULK_POLL_COUNT;
  if (!Number.isSafeInteger(pollCount) || pollCount < 0) {
    fail('bulk_poll_count: must be a non-negative integer');
  }
  const fileMax = raw.bulk_file_max ?? DEFAULT_BULK_FILE_MAX;
  if (!Number.isSafeInteger(fileMax) || fileMax <= 0) {
    fail('bulk_file_max: must be a positive integer');
  }
  const requiresAccessToken = raw.bulk_requires_access_token ?? DEFAULT_BULK_REQUIRES_ACCESS_TOKEN;
  if (typeof requiresAccessToken !== 'boolean') {
    fail('bulk_requires_access_token: must be true or false');
  }

  // Interactive mode: oidc-provider's own login and consent pages instead of the
  // auto-approving interaction, and the "EHR" page at /ehr (for a real browser).
  const interactive = raw.interactive ?? false;
  if (typeof interactive !== 'boolean') {
    fail('interactive: must be true or false');
  }

  if (!Array.isArray(raw.clients)) {
    fail('clients: must be an array');
  }
  const seen = new Set();
  const clients = raw.clients.map((client, i) => validateClient(client, i, seen));

  return {
    port,
    clients,
    accessTokenTtl: ttl,
    refreshTokenTtl,
    idTokenTtl,
    bulk: { pollCount, requiresAccessToken, fileMax },
    interactive,
  };
}

/** Reads, parses and validates the CONFIG file at `path`. */
export function loadConfig(path) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    fail(`cannot read ${path}: ${err.message}`);
  }
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    fail(`${path} is not valid JSON: ${err.message}`);
  }
  return validateConfig(raw);
}
