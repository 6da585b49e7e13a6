// FHIR Bulk Data export (async request pattern):
//
//   GET|POST /fhir/$export, /fhir/Patient/$export, /fhir/Group/<id>/$export
//        -> 202, Content-Location: <base>/$export-status/<exportId>
//   GET    /fhir/$export-status/<exportId>  -> 202 (in progress) ... then 200 + manifest
//   DELETE /fhir/$export-status/<exportId>  -> 202; later requests 404
//   GET    /bulk-files/<exportId>/<n>.ndjson -> application/fhir+ndjson (gzip on request)
//
// The resources of an export are chosen at kick-off (the stored, immutable
// version objects are kept by reference) and serialised line by line when a
// file is downloaded, so large exports never become one big string.

import { randomUUID } from 'node:crypto';
import { Readable, pipeline } from 'node:stream';
import { createGzip } from 'node:zlib';

import { OperationOutcomeError, getStatus, isResourceType } from '@medplum/core';

import { InvalidToken } from './fhir_auth.mjs';
import {
  headerValue, operationOutcome, sendFhir, sendJson,
} from './http_util.mjs';
import { inPatientCompartment, projectElements } from './rest.mjs';
import { permits } from './scopes.mjs';

export const NDJSON_CONTENT_TYPE = 'application/fhir+ndjson';
const OUTPUT_FORMATS = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);
const SUPPORTED_PARAMETERS = new Set([
  '_outputFormat', '_since', '_until', '_type', '_elements', 'patient', 'includeAssociatedData',
  '_typeFilter', 'allowPartialManifests',
]);
/** How long a completed export's files stay available (the manifest's Expires header). */
const EXPIRES_AFTER_MS = 60 * 60 * 1000;
/** NDJSON is written in chunks of about this many characters. */
const CHUNK_CHARS = 64 * 1024;

class BulkError extends Error {
  constructor(status, code, message, headers = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

const badRequest = (message) => new BulkError(400, 'invalid', message);

function parseInstantParam(name, value) {
  const ms = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}(T.+)?$/.test(value) || Number.isNaN(ms)) {
    throw badRequest(`${name} must be a FHIR instant, e.g. 2024-01-01T00:00:00Z`);
  }
  return ms;
}

function splitList(values) {
  return [...new Set(values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean))];
}

/** [name, value] pairs of a kick-off: the URL query plus (POST) a Parameters body. */
function kickoffParameters(req, fhirPath, body) {
  const pairs = [...new URL(fhirPath, 'http://x/').searchParams];
  if (pairs.some(([k]) => k === 'patient')) {
    throw badRequest('the patient parameter is only accepted in a POST Parameters body');
  }
  if (req.method === 'POST' && body !== undefined) {
    if (body?.resourceType !== 'Parameters') throw badRequest('a POST kick-off body must be a Parameters resource');
    for (const [i, p] of (Array.isArray(body.parameter) ? body.parameter : []).entries()) {
      if (typeof p?.name !== 'string') throw badRequest(`Parameters.parameter[${i}] has no name`);
      const key = Object.keys(p).find((k) => k.startsWith('value') && k.length > 5);
      const value = key === 'valueReference' ? p.valueReference?.reference : p[key];
      if (value === undefined || value === null || typeof value === 'object') {
        throw badRequest(`Parameters.parameter[${i}] (${p.name}) needs a primitive value[x] or valueReference`);
      }
      pairs.push([p.name, String(value)]);
    }
  }
  return pairs;
}

/** Validates and normalises the kick-off parameters. */
function parseKickoff(pairs, { lenient, level }) {
  const all = (name) => pairs.filter(([k]) => k === name).map(([, v]) => v);
  const last = (name) => all(name).at(-1);
  for (const [name] of pairs) {
    if (!SUPPORTED_PARAMETERS.has(name) && !lenient) {
      throw badRequest(`unsupported parameter ${name} (send Prefer: handling=lenient to ignore it)`);
    }
  }
  const outputFormat = last('_outputFormat') ?? NDJSON_CONTENT_TYPE;
  if (!OUTPUT_FORMATS.has(outputFormat)) {
    throw badRequest(`_outputFormat ${outputFormat} is not supported (use application/fhir+ndjson)`);
  }
  const since = last('_since');
  const until = last('_until');
  const patients = all('patient').map((ref) => {
    const m = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(ref);
    if (!m) throw badRequest(`patient ${ref} is not a Patient reference`);
    return m[1];
  });
  if (patients.length > 0 && level === 'system') {
    throw badRequest('the patient parameter applies to Patient and Group exports only');
  }
  return {
    outputFormat,
    since,
    sinceMs: since === undefined ? undefined : parseInstantParam('_since', since),
    until,
    untilMs: until === undefined ? undefined : parseInstantParam('_until', until),
    types: splitList(all('_type')),
    elements: splitList(all('_elements')),
    patients,
    typeFilters: all('_typeFilter'),
    includeAssociatedData: splitList(all('includeAssociatedData')),
  };
}

function acceptsGzip(value) {
  if (typeof value !== 'string') return false;
  return value.split(',').some((part) => {
    const [coding, ...params] = part.split(';').map((s) => s.trim());
    if (!['gzip', 'x-gzip'].includes(coding.toLowerCase())) return false;
    const q = params.find((p) => /^q=/i.test(p));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

function* ndjsonChunks(items, elements) {
  let chunk = '';
  for (const item of items) {
    chunk += `${JSON.stringify(elements.length > 0 ? projectElements(item, elements) : item)}\n`;
    if (chunk.length >= CHUNK_CHARS) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk.length > 0) yield chunk;
}

const canExport = (grants, type) => permits(grants, type, 'r') && permits(grants, type, 's');

export class BulkExports {
  /**
   * @param {object} opts
   * @param {string} opts.base      FHIR base URL
   * @param {string} opts.origin    http://127.0.0.1:PORT
   * @param {object} opts.repo      HarnessRepository
   * @param {object} opts.state     HarnessState (counters, kick-off log)
   * @param {Function} opts.verifyBearer  (authorization header) => { claims, grants }
   * @param {object} opts.settings  { pollCount, requiresAccessToken, fileMax } from CONFIG
   * @param {(msg: string) => void} opts.log
   */
  constructor({
    base, origin, repo, state, verifyBearer, settings, log,
  }) {
    this.base = base;
    this.origin = origin;
    this.repo = repo;
    this.state = state;
    this.verifyBearer = verifyBearer;
    this.log = log;
    this.settings = {
      requiresAccessToken: settings.requiresAccessToken,
      pollCount: settings.pollCount,
      fileMax: settings.fileMax,
      failNextPolls: 0,
      rateLimitNextPolls: 0,
    };
    this.jobs = new Map();
  }

  settingsView() {
    return { ...this.settings };
  }

  /**
   * Applies `{requiresAccessToken, pollCount, fileMax, failNextPolls,
   * rateLimitNextPolls}` (each optional); throws Error with a message on
   * bad input. Returns the new settings.
   */
  updateSettings(input) {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      throw new Error('body must be a JSON object');
    }
    const next = { ...this.settings };
    for (const [key, value] of Object.entries(input)) {
      if (key === 'requiresAccessToken') {
        if (typeof value !== 'boolean') throw new Error('requiresAccessToken must be true or false');
      } else if (['pollCount', 'failNextPolls', 'rateLimitNextPolls'].includes(key)) {
        if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${key} must be a non-negative integer`);
      } else if (key === 'fileMax') {
        if (!Number.isSafeInteger(value) || value <= 0) throw new Error('fileMax must be a positive integer');
      } else {
        throw new Error(`unknown setting ${key} (allowed: ${Object.keys(this.settings).join(', ')})`);
      }
      next[key] = value;
    }
    this.settings = next;
    return this.settingsView();
  }

  /** Which bulk route `pathOnly` (below /fhir, no query) is, or null. */
  static match(pathOnly) {
    const path = pathOnly.replace(/%24/gi, '$');
    if (path === '$export') return { kind: 'kickoff', level: 'system' };
    if (path === 'Patient/$export') return { kind: 'kickoff', level: 'patient' };
    let m = /^Group\/([^/]+)\/\$export$/.exec(path);
    if (m) return { kind: 'kickoff', level: 'group', groupId: m[1] };
    m = /^\$export-status\/([^/]+)$/.exec(path);
    if (m) return { kind: 'status', exportId: m[1] };
    return null;
  }

  /** Handles a matched /fhir bulk request (bearer token already verified). */
  async handleFhir(req, res, {
    match, fhirPath, body, claims, grants,
  }) {
    try {
      if (match.kind === 'kickoff') await this.kickoff(req, res, { match, fhirPath, body, claims, grants });
      else this.status(req, res, { exportId: match.exportId, claims });
    } catch (err) {
      if (!(err instanceof BulkError)) throw err;
      this.log(`bulk ${req.method} /fhir/${fhirPath} -> ${err.status} (${err.message})`);
      sendFhir(res, err.status, operationOutcome(err.code, err.message), err.headers);
    }
  }

  async kickoff(req, res, {
    match, fhirPath, body, claims, grants,
  }) {
    if (req.method !== 'GET' && req.method !== 'POST') {
      throw new BulkError(405, 'not-supported', 'a kick-off is GET or POST', { Allow: 'GET, POST' });
    }
    const prefer = headerValue(req, 'prefer') ?? '';
    if (!/(^|[,;\s])respond-async\b/i.test(prefer)) {
      throw badRequest('a Bulk Data kick-off needs the header Prefer: respond-async');
    }
    const lenient = /(^|[,;\s])handling\s*=\s*lenient\b/i.test(prefer);
    const params = parseKickoff(kickoffParameters(req, fhirPath, body), { lenient, level: match.level });

    let patientIds;
    if (match.level === 'patient') {
      patientIds = new Set(params.patients.length > 0
        ? params.patients
        : [...this.repo.storedResources('Patient')].map((p) => p.id));
    } else if (match.level === 'group') {
      let group;
      try {
        group = await this.repo.readResource('Group', match.groupId);
      } catch (err) {
        if (err instanceof OperationOutcomeError) {
          throw new BulkError(getStatus(err.outcome), 'not-found', `Group/${match.groupId} not found`);
        }
        throw err;
      }
      const members = (group.member ?? [])
        .map((m) => /(?:^|\/)Patient\/([^/]+)$/.exec(m?.entity?.reference ?? '')?.[1])
        .filter(Boolean);
      patientIds = new Set(params.patients.length > 0 ? members.filter((id) => params.patients.includes(id)) : members);
    }

    if (params.types.length > 0) {
      const missing = params.types.filter((t) => !canExport(grants, t));
      if (missing.length > 0) {
        const scopes = missing.map((t) => `system/${t}.rs`).join(' ');
        throw new BulkError(403, 'forbidden', `token lacks a scope for: ${scopes}`, {
          'WWW-Authenticate': `Bearer error="insufficient_scope", error_description="token lacks a scope for: ${scopes}", scope="${scopes}"`,
        });
      }
    } else if (!grants.some((g) => g.letters.has('r') && g.letters.has('s'))) {
      throw new BulkError(403, 'forbidden', 'token lacks a read and search scope: system/*.rs', {
        'WWW-Authenticate': 'Bearer error="insufficient_scope", error_description="token lacks a read and search scope", scope="system/*.rs"',
      });
    }

    const transactionTime = new Date().toISOString();
    const exportId = randomUUID();
    const types = params.types.length > 0
      ? params.types
      : this.repo.resourceTypes().sort().filter((t) => canExport(grants, t));
    const fileMax = this.settings.fileMax;
    const files = new Map();
    const output = [];
    const errors = [];
    const fileUrl = (n) => `${this.origin}/bulk-files/${exportId}/${n}.ndjson`;
    for (const type of types) {
      if (!isResourceType(type)) {
        errors.push(operationOutcome('not-supported', `_type ${type} is not a known resource type`));
        continue;
      }
      const items = [];
      for (const r of this.repo.storedResources(type)) {
        if (patientIds && !inPatientCompartment(r, patientIds)) continue;
        const updated = Date.parse(r.meta?.lastUpdated);
        if (params.sinceMs !== undefined && !(updated > params.sinceMs)) continue;
        if (params.untilMs !== undefined && updated > params.untilMs) continue;
        items.push(r);
      }
      if (items.length === 0) {
        if (params.types.length > 0) {
          errors.push(operationOutcome('not-found', `no ${type} resources match this export`, 'warning'));
        }
        continue;
      }
      for (let start = 0; start < items.length; start += fileMax) {
        const n = files.size + 1;
        const part = items.slice(start, start + fileMax);
        files.set(n, { items: part, elements: params.elements });
        output.push({ type, url: fileUrl(n), count: part.length });
      }
    }
    const error = [];
    if (errors.length > 0) {
      const n = files.size + 1;
      files.set(n, { items: errors, elements: [] });
      error.push({ type: 'OperationOutcome', url: fileUrl(n), count: errors.length });
    }

    const request = `${this.base}/${fhirPath}`;
    this.jobs.set(exportId, {
      clientId: claims.client_id,
      requiresAccessToken: this.settings.requiresAccessToken,
      pollCount: this.settings.pollCount,
      polls: 0,
      manifest: {
        transactionTime, request, requiresAccessToken: this.settings.requiresAccessToken, output, deleted: [], error,
      },
      files,
    });
    this.state.recordBulkKickoff({
      export_id: exportId,
      client_id: claims.client_id,
      method: req.method,
      level: match.level,
      ...(match.groupId ? { group_id: match.groupId } : {}),
      request,
      accept: headerValue(req, 'accept') ?? null,
      prefer,
      parameters: {
        _outputFormat: params.outputFormat,
        _type: params.types,
        _since: params.since ?? null,
        _until: params.until ?? null,
        _elements: params.elements,
        _typeFilter: params.typeFilters,
        patient: params.patients,
        includeAssociatedData: params.includeAssociatedData,
      },
    });
    const statusUrl = `${this.base}/$export-status/${exportId}`;
    this.log(`bulk kick-off ${req.method} /fhir/${fhirPath} -> 202 ${statusUrl} `
      + `(${output.length} file(s), ${error.length ? `${errors.length} error(s)` : 'no errors'})`);
    sendFhir(res, 202, operationOutcome('informational', `export accepted; poll ${statusUrl}`, 'information'), {
      'Content-Location': statusUrl,
    });
  }

  status(req, res, { exportId, claims }) {
    this.state.recordBulkStatusRequest();
    const job = this.jobs.get(exportId);
    if (!job) throw new BulkError(404, 'not-found', `no export ${exportId} (unknown or deleted)`);
    if (job.clientId !== claims.client_id) {
      throw new BulkError(403, 'forbidden', 'this export belongs to another client');
    }
    if (req.method === 'DELETE') {
      this.jobs.delete(exportId);
      this.log(`bulk DELETE export ${exportId} -> 202`);
      sendFhir(res, 202, operationOutcome('informational', 'export deleted', 'information'));
      return;
    }
    if (req.method !== 'GET') {
      throw new BulkError(405, 'not-supported', 'the status URL accepts GET and DELETE', { Allow: 'GET, DELETE' });
    }
    if (this.settings.rateLimitNextPolls > 0) {
      this.settings.rateLimitNextPolls -= 1;
      throw new BulkError(429, 'throttled', 'too many status requests; retry later', { 'Retry-After': '1' });
    }
    if (this.settings.failNextPolls > 0) {
      this.settings.failNextPolls -= 1;
      throw new BulkError(500, 'transient', 'temporary failure while checking the export; retry');
    }
    if (job.polls < job.pollCount) {
      job.polls += 1;
      const progress = `${Math.floor((100 * job.polls) / (job.pollCount + 1))}%`;
      this.log(`bulk status ${exportId} -> 202 (${progress})`);
      res.writeHead(202, { 'Retry-After': '1', 'X-Progress': progress, 'Content-Length': 0 });
      res.end();
      return;
    }
    this.log(`bulk status ${exportId} -> 200 (complete)`);
    sendJson(res, 200, job.manifest, { Expires: new Date(Date.now() + EXPIRES_AFTER_MS).toUTCString() });
  }

  /** GET /bulk-files/<exportId>/<n>.ndjson */
  async handleFile(req, res, pathname) {
    const m = /^\/bulk-files\/([^/]+)\/([1-9][0-9]*)\.ndjson$/.exec(pathname);
    const job = m ? this.jobs.get(m[1]) : undefined;
    const fail = (status, code, message, headers = {}) => {
      this.log(`bulk file ${req.method} ${pathname} -> ${status} (${message})`);
      sendFhir(res, status, operationOutcome(code, message), headers);
    };
    req.resume();
    if (!job) {
      fail(404, 'not-found', 'no such bulk file (unknown or deleted export)');
      return;
    }
    if (req.method !== 'GET') {
      fail(405, 'not-supported', 'bulk files accept GET only', { Allow: 'GET' });
      return;
    }
    const withAuth = typeof req.headers.authorization === 'string' && req.headers.authorization !== '';
    this.state.recordBulkFileRequest({ open: !job.requiresAccessToken, withAuth });
    if (job.requiresAccessToken) {
      let claims;
      try {
        ({ claims } = await this.verifyBearer(req.headers.authorization));
      } catch (err) {
        if (!(err instanceof InvalidToken)) throw err;
        fail(401, 'login', err.message, {
          'WWW-Authenticate': `Bearer error="invalid_token", error_description="${err.message}"`,
        });
        return;
      }
      if (claims.client_id !== job.clientId) {
        fail(403, 'forbidden', 'this export belongs to another client');
        return;
      }
    }
    const file = job.files.get(Number(m[2]));
    if (!file) {
      fail(404, 'not-found', 'no such bulk file');
      return;
    }
    const gzip = acceptsGzip(headerValue(req, 'accept-encoding'));
    this.log(`bulk file GET ${pathname} -> 200 (${file.items.length} line(s)${gzip ? ', gzip' : ''}, `
      + `${withAuth ? 'with' : 'without'} Authorization)`);
    res.writeHead(200, {
      'Content-Type': NDJSON_CONTENT_TYPE,
      'Cache-Control': 'no-store',
      Vary: 'Accept-Encoding',
      ...(gzip ? { 'Content-Encoding': 'gzip' } : {}),
    });
    const source = Readable.from(ndjsonChunks(file.items, file.elements));
    const done = (err) => {
      if (err) this.log(`bulk file ${pathname}: stream ended early (${err.message})`);
    };
    if (gzip) pipeline(source, createGzip(), res, done);
    else pipeline(source, res, done);
  }
}
