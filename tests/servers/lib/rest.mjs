// FHIR REST interactions that @medplum/fhir-router's in-memory setup lacks or
// answers differently from a real server, installed as FhirRouter routes so
// that batch and transaction entries get them too:
//
// - search (type, `_search`, system `?_type=`, Patient compartment) with
//   `_count` (default 20, at most 1000) / `_offset` paging and absolute
//   `self`/`first`/`previous`/`next`/`last` links, `total`, `_sort`,
//   `_elements`, `_summary=count`; unknown parameters are ignored (400 with
//   `Prefer: handling=strict`);
// - read with `If-None-Match` / `If-Modified-Since` -> 304, 410 for deleted;
// - create ignores a client `id`; update answers 201 when it creates;
//   `If-Match` on update, patch and delete (412 on mismatch);
// - JSON Patch and FHIRPath Patch (422 when a patch cannot be applied),
//   conditional patch;
// - history at instance, type and system level (`_count`, `_offset`,
//   `_since`), with DELETE entries;
// - batch/transaction: FHIRPath Patch entries, etag/lastModified/location
//   in response entries;
// - `Patient/[id]/$everything` and `[type]/$validate`.

import { STATUS_CODES } from 'node:http';

import {
  OperationOutcomeError, allOk, badRequest, created, evalFhirPath, globalSchema, isResourceType,
  matchesSearchRequest, multipleMatches, normalizeOperationOutcome, notFound, notModified,
  parseSearchRequest, preconditionFailed, validateResource,
} from '@medplum/core';

import { PatchError, applyPatchBody, isFhirPathPatch } from './patch.mjs';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 1000;

const SUBSETTED = {
  system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
  code: 'SUBSETTED',
};

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** An OperationOutcome answered with 422 (getStatus maps the `business-rule` id to 422). */
export function unprocessable(text) {
  return {
    resourceType: 'OperationOutcome',
    id: 'business-rule',
    issue: [{
      severity: 'error', code: 'processing', details: { text }, diagnostics: text,
    }],
  };
}

const fail = (outcome) => new OperationOutcomeError(outcome);

function header(req, name) {
  const value = req.headers?.[name];
  return Array.isArray(value) ? value.join(',') : value;
}

const isStrict = (req) => /(^|[,;\s])handling\s*=\s*strict\b/i.test(header(req, 'prefer') ?? '');

/** The opaque tags of an If-Match / If-None-Match header (`*` stays `*`). */
function entityTags(value) {
  if (typeof value !== 'string' || value.trim() === '') return [];
  if (value.trim() === '*') return ['*'];
  const quoted = [...value.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
  return quoted.length > 0 ? quoted : value.split(',').map((t) => t.trim().replace(/^W\//, '')).filter(Boolean);
}

/** 412 unless the If-Match header (if any) names the current version. */
function checkIfMatch(req, current) {
  const tags = entityTags(header(req, 'if-match'));
  if (tags.length === 0) return;
  if (current === undefined || !(tags.includes('*') || tags.includes(current.meta?.versionId))) {
    throw fail(preconditionFailed);
  }
}

function notModifiedFor(req, resource) {
  const tags = entityTags(header(req, 'if-none-match'));
  if (tags.length > 0) return tags.includes('*') || tags.includes(resource.meta?.versionId);
  const since = Date.parse(header(req, 'if-modified-since') ?? '');
  const updated = Date.parse(resource.meta?.lastUpdated ?? '');
  return !Number.isNaN(since) && !Number.isNaN(updated) && Math.floor(updated / 1000) * 1000 <= since;
}

/** Query object (string | string[] values) -> ordered [key, value] pairs. */
export function queryPairs(query) {
  const pairs = [];
  for (const [key, value] of Object.entries(query ?? {})) {
    for (const v of [].concat(value ?? [])) pairs.push([key, String(v)]);
  }
  return pairs;
}

function pairsToQuery(pairs) {
  const out = Object.create(null);
  for (const [k, v] of pairs) out[k] = k in out ? [].concat(out[k], v) : v;
  return out;
}

function nonNegativeInteger(name, value) {
  if (!/^[0-9]+$/.test(value)) throw fail(badRequest(`${name} must be a non-negative integer`));
  return Number(value);
}

/** Splits off `_count` / `_offset`: { count, offset, rest }. */
function paging(pairs) {
  let count = DEFAULT_PAGE_SIZE;
  let offset = 0;
  const rest = [];
  for (const [k, v] of pairs) {
    if (k === '_count') count = Math.min(nonNegativeInteger(k, v), MAX_PAGE_SIZE);
    else if (k === '_offset') offset = nonNegativeInteger(k, v);
    else rest.push([k, v]);
  }
  if (rest.some(([k, v]) => k === '_summary' && v === 'count')) count = 0;
  return { count, offset, rest };
}

function parseInstant(name, value) {
  const ms = Date.parse(value);
  if (!/^\d{4}(-\d{2}(-\d{2}(T.+)?)?)?$/.test(value) || Number.isNaN(ms)) {
    throw fail(badRequest(`${name} must be a FHIR instant, e.g. 2024-01-01T00:00:00Z`));
  }
  return new Date(ms).toISOString();
}

/**
 * Keeps resourceType, id, meta and the listed top-level elements
 * (`name` or `Type.name`); marks the copy SUBSETTED.
 */
export function projectElements(resource, elements) {
  const keep = new Set(['resourceType', 'id', 'meta']);
  for (const e of elements) {
    const dot = e.indexOf('.');
    if (dot < 0) keep.add(e);
    else if (e.slice(0, dot) === resource.resourceType) keep.add(e.slice(dot + 1));
  }
  const out = {};
  for (const [k, v] of Object.entries(resource)) if (keep.has(k)) out[k] = v;
  out.meta = { ...(resource.meta ?? {}), tag: [...(resource.meta?.tag ?? []), SUBSETTED] };
  return out;
}

function sortMatches(resourceType, matches, sortRules) {
  const params = globalSchema.types[resourceType]?.searchParams ?? {};
  const keys = (sortRules ?? [])
    .map((rule) => ({ expression: params[rule.code]?.expression, descending: rule.descending }))
    .filter((k) => k.expression);
  if (keys.length === 0) return matches;
  const decorated = matches.map((r) => ({
    r, values: keys.map((k) => JSON.stringify(evalFhirPath(k.expression, r))),
  }));
  decorated.sort((a, b) => {
    for (let i = 0; i < keys.length; i += 1) {
      const c = a.values[i].localeCompare(b.values[i]);
      if (c !== 0) return keys[i].descending ? -c : c;
    }
    return 0;
  });
  return decorated.map((d) => d.r);
}

/**
 * Recent search results, so that following `next` links does not match the
 * whole type again (Medplum's token matching costs ~0.2 ms per resource).
 * Entries are valid while the repository's write generation is unchanged.
 */
const SEARCH_CACHE_SIZE = 16;
const searchCache = new Map();

/**
 * Every current resource of `resourceType` matching the search parameters
 * `pairs` (paging already removed), without copying. Unknown parameters are
 * ignored unless `strict`. Returns { matches, fields, kept } where `kept` are
 * the pairs that were honoured.
 */
export function matchAll(repo, resourceType, pairs, { strict = false } = {}) {
  const key = JSON.stringify([resourceType, strict, pairs]);
  const cached = searchCache.get(key);
  if (cached && cached.repo === repo && cached.generation === repo.generation) return cached.result;
  const result = matchUncached(repo, resourceType, pairs, { strict });
  searchCache.delete(key);
  searchCache.set(key, { repo, generation: repo.generation, result });
  if (searchCache.size > SEARCH_CACHE_SIZE) searchCache.delete(searchCache.keys().next().value);
  return result;
}

function matchUncached(repo, resourceType, pairs, { strict }) {
  let request;
  try {
    request = parseSearchRequest(resourceType, pairsToQuery(pairs));
  } catch (err) {
    throw fail(badRequest(`bad search parameter: ${normalizeOperationOutcome(err).issue?.[0]?.details?.text ?? err}`));
  }
  const known = globalSchema.types[resourceType]?.searchParams ?? {};
  const unknown = new Set((request.filters ?? [])
    .filter((f) => !known[f.code] && !f.code.includes('.') && f.code !== '_has')
    .map((f) => f.code));
  if (unknown.size > 0 && strict) {
    throw fail(badRequest(`unknown search parameter(s) for ${resourceType}: ${[...unknown].join(', ')}`));
  }
  request.filters = request.filters?.filter((f) => !unknown.has(f.code));
  const matches = [];
  for (const r of repo.storedResources(resourceType)) {
    if (matchesSearchRequest(r, request)) matches.push(r);
  }
  return {
    matches: sortMatches(resourceType, matches, request.sortRules),
    fields: request.fields,
    kept: pairs.filter(([k]) => !unknown.has(k.split(':')[0])),
  };
}

/** Types a Patient-compartment reference field may point from. */
const PATIENT_REFERENCE_FIELDS = ['subject', 'patient'];

/** Ids of the Patients that `resource.subject` / `resource.patient` reference. */
export function referencedPatientIds(resource) {
  const ids = [];
  for (const field of PATIENT_REFERENCE_FIELDS) {
    for (const ref of [].concat(resource?.[field] ?? [])) {
      const m = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]*)?$/.exec(ref?.reference ?? '');
      if (m) ids.push(m[1]);
    }
  }
  return ids;
}

/** True when `resource` belongs to the compartment of one of `patientIds` (a Set). */
export function inPatientCompartment(resource, patientIds) {
  if (resource.resourceType === 'Patient') return patientIds.has(resource.id);
  return referencedPatientIds(resource).some((id) => patientIds.has(id));
}

function checkResourceType(resourceType) {
  if (!isResourceType(resourceType)) throw fail(notFound);
}

/** Creates the route handlers; `base` is the absolute FHIR base URL. */
export function installRestRoutes(router, { base }) {
  const fullUrl = (r) => `${base}/${r.resourceType}/${r.id}`;

  function pagedBundle({
    type, url, pairs, matches, count, offset, toEntry,
  }) {
    const total = matches.length;
    const page = count === 0 ? [] : matches.slice(offset, offset + count);
    const link = (relation, off) => {
      const query = new URLSearchParams([...pairs, ['_count', String(count)], ['_offset', String(off)]]);
      return { relation, url: `${url}?${query}` };
    };
    const links = [link('self', offset)];
    if (count > 0) {
      links.push(link('first', 0));
      if (offset > 0) links.push(link('previous', Math.max(0, offset - count)));
      if (offset + count < total) links.push(link('next', offset + count));
      links.push(link('last', total === 0 ? 0 : Math.floor((total - 1) / count) * count));
    }
    return {
      resourceType: 'Bundle',
      type,
      total,
      link: links,
      ...(page.length > 0 ? { entry: page.map(toEntry) } : {}),
    };
  }

  const searchEntry = (fields) => (r) => ({
    fullUrl: fullUrl(r),
    resource: fields?.length ? projectElements(structuredClone(r), fields) : structuredClone(r),
    search: { mode: 'match' },
  });

  async function searchType(req, repo) {
    const { resourceType } = req.params;
    checkResourceType(resourceType);
    const pairs = queryPairs(req.query);
    if (req.method === 'POST' && isPlainObject(req.body)) pairs.push(...queryPairs(req.body));
    const { count, offset, rest } = paging(pairs);
    const { matches, fields, kept } = matchAll(repo, resourceType, rest, { strict: isStrict(req) });
    return [allOk, pagedBundle({
      type: 'searchset', url: `${base}/${resourceType}`, pairs: kept, matches, count, offset, toEntry: searchEntry(fields),
    })];
  }

  async function searchSystem(req, repo) {
    const { count, offset, rest } = paging(queryPairs(req.query));
    const named = rest.filter(([k]) => k === '_type')
      .flatMap(([, v]) => v.split(',')).map((t) => t.trim()).filter(Boolean);
    for (const t of named) {
      if (!isResourceType(t)) throw fail(badRequest(`_type: unknown resource type ${t}`));
    }
    const types = named.length > 0 ? [...new Set(named)] : repo.resourceTypes().sort();
    const others = rest.filter(([k]) => k !== '_type');
    let fields;
    const matches = [];
    const honoured = new Set();
    for (const t of types) {
      const result = matchAll(repo, t, others, { strict: isStrict(req) });
      matches.push(...result.matches);
      fields ??= result.fields;
      for (const p of result.kept) honoured.add(JSON.stringify(p));
    }
    const pairs = [...rest.filter(([k]) => k === '_type'), ...others.filter((p) => honoured.has(JSON.stringify(p)))];
    return [allOk, pagedBundle({
      type: 'searchset', url: base, pairs, matches, count, offset, toEntry: searchEntry(fields),
    })];
  }

  async function compartmentSearch(req, repo) {
    const { patientId, resourceType } = req.params;
    checkResourceType(resourceType);
    const { count, offset, rest } = paging(queryPairs(req.query));
    const { matches, fields, kept } = matchAll(repo, resourceType, rest, { strict: isStrict(req) });
    const ids = new Set([patientId]);
    return [allOk, pagedBundle({
      type: 'searchset',
      url: `${base}/Patient/${patientId}/${resourceType}`,
      pairs: kept,
      matches: matches.filter((r) => inPatientCompartment(r, ids)),
      count,
      offset,
      toEntry: searchEntry(fields),
    })];
  }

  async function read(req, repo) {
    const { resourceType, id } = req.params;
    const resource = await repo.readResource(resourceType, id);
    return [notModifiedFor(req, resource) ? notModified : allOk, resource];
  }

  const create = (original) => async (req, repo, r, options) => {
    // A server assigns the id of a created resource. (In a batch Medplum
    // assigns it itself beforehand, for urn:uuid references.)
    if (!options?.batch && isPlainObject(req.body)) {
      const { id, ...rest } = req.body;
      req.body = rest;
    }
    return original(req, repo, r, options);
  };

  async function update(req, repo) {
    const { resourceType, id } = req.params;
    const resource = req.body;
    if (!isPlainObject(resource)) throw fail(badRequest('PUT needs a resource body'));
    if (resource.resourceType !== resourceType) {
      throw fail(badRequest(`Incorrect resource type: expected ${resourceType}, found ${resource.resourceType ?? '<none>'}`));
    }
    if (resource.id !== id) throw fail(badRequest('The resource id must equal the id in the URL'));
    const existed = repo.exists(resourceType, id);
    const tags = entityTags(header(req, 'if-match'));
    if (tags.length > 0 && !existed) throw fail(preconditionFailed);
    const ifMatch = tags.includes('*') ? undefined : tags[0];
    const result = await repo.updateResource(resource, { ifMatch });
    return [existed ? allOk : created, result];
  }

  async function remove(req, repo) {
    const { resourceType, id } = req.params;
    if (entityTags(header(req, 'if-match')).length > 0) {
      const current = repo.exists(resourceType, id) ? await repo.readResource(resourceType, id) : undefined;
      checkIfMatch(req, current);
    }
    await repo.deleteResource(resourceType, id);
    return [allOk];
  }

  async function patchResource(req, repo, resourceType, id) {
    const current = await repo.readResource(resourceType, id);
    checkIfMatch(req, current);
    let patched;
    try {
      patched = applyPatchBody(current, req.body);
    } catch (err) {
      if (err instanceof PatchError) throw fail(err.status === 422 ? unprocessable(err.message) : badRequest(err.message));
      throw err;
    }
    if (!isPlainObject(patched) || patched.resourceType !== resourceType || patched.id !== id) {
      throw fail(unprocessable('a patch must not change resourceType or id'));
    }
    const result = await repo.updateResource(patched, { ifMatch: current.meta?.versionId });
    return [allOk, result];
  }

  async function patch(req, repo) {
    return patchResource(req, repo, req.params.resourceType, req.params.id);
  }

  async function conditionalPatch(req, repo) {
    const { resourceType } = req.params;
    checkResourceType(resourceType);
    const { rest } = paging(queryPairs(req.query));
    if (rest.length === 0) throw fail(badRequest('conditional patch needs search parameters'));
    const { matches } = matchAll(repo, resourceType, rest, { strict: true });
    if (matches.length === 0) throw fail(notFound);
    if (matches.length > 1) throw fail(multipleMatches);
    return patchResource(req, repo, resourceType, matches[0].id);
  }

  const historyEntry = (e) => ({
    fullUrl: `${base}/${e.resourceType}/${e.id}`,
    ...(e.resource ? { resource: structuredClone(e.resource) } : {}),
    request: { method: e.method, url: e.method === 'POST' ? e.resourceType : `${e.resourceType}/${e.id}` },
    response: {
      status: { POST: '201 Created', PUT: '200 OK', DELETE: '204 No Content' }[e.method],
      etag: `W/"${e.versionId}"`,
      lastModified: e.lastUpdated,
    },
  });

  function historyBundle(req, repo, { resourceType, id, url }) {
    const { count, offset, rest } = paging(queryPairs(req.query));
    let since;
    for (const [k, v] of rest) {
      if (k === '_since') since = parseInstant('_since', v);
      else if (isStrict(req)) throw fail(badRequest(`unsupported history parameter ${k}`));
    }
    const entries = repo.historyEntries({ resourceType, id, since });
    return pagedBundle({
      type: 'history',
      url,
      pairs: rest.filter(([k]) => k === '_since'),
      matches: entries,
      count,
      offset,
      toEntry: historyEntry,
    });
  }

  async function historyInstance(req, repo) {
    const { resourceType, id } = req.params;
    const bundle = historyBundle(req, repo, { resourceType, id, url: `${base}/${resourceType}/${id}/_history` });
    if (bundle.total === 0 && repo.historyEntries({ resourceType, id }).length === 0) throw fail(notFound);
    return [allOk, bundle];
  }

  async function historyType(req, repo) {
    const { resourceType } = req.params;
    checkResourceType(resourceType);
    return [allOk, historyBundle(req, repo, { resourceType, url: `${base}/${resourceType}/_history` })];
  }

  async function historySystem(req, repo) {
    return [allOk, historyBundle(req, repo, { url: `${base}/_history` })];
  }

  async function everything(req, repo) {
    const { id } = req.params;
    const patient = await repo.readResource('Patient', id);
    const { count, offset, rest } = paging(queryPairs(req.query));
    let since;
    let types;
    for (const [k, v] of rest) {
      if (k === '_since') since = Date.parse(parseInstant('_since', v));
      else if (k === '_type') types = new Set([...(types ?? []), ...v.split(',').map((t) => t.trim())]);
      else if (isStrict(req)) throw fail(badRequest(`unsupported $everything parameter ${k}`));
    }
    const ids = new Set([id]);
    const matches = [];
    const wanted = (r) => (!types || types.has(r.resourceType))
      && (since === undefined || Date.parse(r.meta?.lastUpdated) >= since);
    if (wanted(patient)) matches.push(patient);
    for (const type of repo.resourceTypes().sort()) {
      if (type === 'Patient') continue;
      for (const r of repo.storedResources(type)) {
        if (inPatientCompartment(r, ids) && wanted(r)) matches.push(r);
      }
    }
    return [allOk, pagedBundle({
      type: 'searchset',
      url: `${base}/Patient/${id}/$everything`,
      pairs: rest.filter(([k]) => k === '_since' || k === '_type'),
      matches,
      count,
      offset,
      toEntry: searchEntry(undefined),
    })];
  }

  async function validate(req) {
    const { resourceType } = req.params;
    checkResourceType(resourceType);
    let resource = req.body;
    if (isPlainObject(resource) && resource.resourceType === 'Parameters' && resourceType !== 'Parameters') {
      resource = resource.parameter?.find?.((p) => p?.name === 'resource')?.resource;
    }
    const issue = (severity, code, text) => ({
      severity, code, details: { text }, diagnostics: text,
    });
    const issues = [];
    if (!isPlainObject(resource)) {
      issues.push(issue('error', 'required', 'no resource to validate'));
    } else if (typeof resource.resourceType !== 'string' || resource.resourceType === '') {
      issues.push(issue('error', 'required', 'resourceType is missing'));
    } else if (resource.resourceType !== resourceType) {
      issues.push(issue('error', 'invalid', `resourceType is ${resource.resourceType}, expected ${resourceType}`));
    } else {
      try {
        issues.push(...validateResource(resource));
      } catch (err) {
        issues.push(...(normalizeOperationOutcome(err).issue ?? []));
      }
    }
    if (issues.length === 0) issues.push(issue('information', 'informational', 'validation passed'));
    return [allOk, { resourceType: 'OperationOutcome', issue: issues }];
  }

  const batch = (original) => async (req, repo, r, options) => {
    const bundle = req.body;
    if (isPlainObject(bundle) && Array.isArray(bundle.entry)) {
      for (const entry of bundle.entry) {
        // Medplum's batch accepts a PATCH entry as Binary (JSON Patch) or as
        // Parameters of JSON Patch ops; carry a FHIRPath Patch as a Binary.
        if (String(entry?.request?.method).toUpperCase() === 'PATCH' && isFhirPathPatch(entry.resource)) {
          const wrapped = JSON.stringify([{ fhirpathPatch: entry.resource }]);
          entry.resource = {
            resourceType: 'Binary', contentType: 'application/json', data: Buffer.from(wrapped).toString('base64'),
          };
        }
      }
    }
    const [outcome, result] = await original(req, repo, r, options);
    for (const entry of result?.entry ?? []) {
      const response = entry?.response;
      if (!response) continue;
      const res = entry.resource;
      if (res?.id && res.meta?.versionId && !['Bundle', 'OperationOutcome'].includes(res.resourceType)) {
        entry.fullUrl = fullUrl(res);
        response.etag = `W/"${res.meta.versionId}"`;
        if (res.meta.lastUpdated) response.lastModified = res.meta.lastUpdated;
        if (response.status === '201') response.location = `${res.resourceType}/${res.id}/_history/${res.meta.versionId}`;
      }
      if (/^[0-9]{3}$/.test(response.status ?? '') && STATUS_CODES[response.status]) {
        response.status = `${response.status} ${STATUS_CODES[response.status]}`;
      }
    }
    return [outcome, result];
  };

  // Replace Medplum's handlers in place (FhirRouter prefers the route added
  // first among equally specific ones), then add the missing routes.
  const routes = router.router.routes;
  const pattern = (route) => route.path.map((s) => (s.param ? `:${s.value}` : s.value)).join('/');
  const replace = (method, path, make) => {
    const route = routes.find((x) => x.method === method && pattern(x) === path);
    if (!route) throw new Error(`@medplum/fhir-router has no route ${method} ${path}`);
    route.handler = make(route.handler);
  };
  replace('GET', '', () => searchSystem);
  replace('POST', '', batch);
  replace('GET', ':resourceType', () => searchType);
  replace('POST', ':resourceType/_search', () => searchType);
  replace('POST', ':resourceType', create);
  replace('GET', ':resourceType/:id', () => read);
  replace('GET', ':resourceType/:id/_history', () => historyInstance);
  replace('PUT', ':resourceType/:id', () => update);
  replace('DELETE', ':resourceType/:id', () => remove);
  replace('PATCH', ':resourceType/:id', () => patch);
  replace('PATCH', ':resourceType', () => conditionalPatch);

  const add = (method, path, handler, data) => router.router.add(method, path, handler, data);
  add('GET', '_history', historySystem, { interaction: 'history-system' });
  add('GET', ':resourceType/_history', historyType, { interaction: 'history-type' });
  // Equally specific as `:resourceType/:id/_history`, which (added first) wins for `_history`.
  add('GET', 'Patient/:patientId/:resourceType', compartmentSearch, { interaction: 'search-type' });
  add('GET', 'Patient/:id/$everything', everything, {
    interaction: 'operation',
    permissions: () => [{ resourceType: 'Patient', letter: 'r' }],
  });
  add('POST', ':resourceType/$validate', validate, {
    interaction: 'operation',
    permissions: (params) => [{ resourceType: params.resourceType, letter: 'rc' }],
  });
}
