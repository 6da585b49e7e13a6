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

/** Bulk Data defaults: status polls answered 202 before the manifest, file size, token rule. */
export const DEFAULT_BULK_POLL_COUNT = 2;
export const DEFAULT_BULK_FILE_MAX = 1000;
export const DEFAULT_BULK_REQUIRES_ACCESS_TOKEN = true;

const TOP_LEVEL_KEYS = new Set([
  'port', 'clients', 'access_token_ttl', 'bulk_poll_count', 'bulk_requires_access_token', 'bulk_file_max',
]);
const CLIENT_KEYS = new Set(['client_id', 'jwks', 'jwks_uri']);
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
  const hasJwks = client.jwks !== undefined;
  const hasJwksUri = client.jwks_uri !== undefined;
  if (hasJwks === hasJwksUri) {
    fail(`${where}: exactly one of "jwks" or "jwks_uri" is required`);
  }
  if (hasJwks) {
    validateJwks(client.jwks, `${where}.jwks`);
  } else {
    validateJwksUri(client.jwks_uri, `${where}.jwks_uri`);
  }
  return {
    client_id: client.client_id,
    ...(hasJwks ? { jwks: client.jwks } : { jwks_uri: client.jwks_uri }),
  };
}

/**
 * Validates a parsed CONFIG object and returns a normalised copy:
 * `{ port, clients: [{client_id, jwks | jwks_uri}], accessTokenTtl,
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

  const ttl = raw.access_token_ttl ?? DEFAULT_ACCESS_TOKEN_TTL;
  if (!Number.isSafeInteger(ttl) || ttl <= 0) {
    fail('access_token_ttl: must be a positive integer number of seconds');
  }

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

  if (!Array.isArray(raw.clients)) {
    fail('clients: must be an array');
  }
  const seen = new Set();
  const clients = raw.clients.map((client, i) => validateClient(client, i, seen));

  return {
    port, clients, accessTokenTtl: ttl, bulk: { pollCount, requiresAccessToken, fileMax },
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
