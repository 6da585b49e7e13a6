// Small helpers for the plain node:http server.

/** Maximum request body accepted by the FHIR and admin endpoints. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

export class BodyTooLarge extends Error {}

export function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** Reads the whole request body into a Buffer (bounded by MAX_BODY_BYTES). */
export async function readBody(req, limit = MAX_BODY_BYTES) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new BodyTooLarge(`request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

export const FHIR_CONTENT_TYPE = 'application/fhir+json';

/** An error OperationOutcome; the message goes in details.text and diagnostics. */
export function operationOutcome(code, text, severity = 'error') {
  // Medplum's own outcomes carry the message in details.text; ours carry it
  // in both details.text and diagnostics.
  return {
    resourceType: 'OperationOutcome',
    issue: [{
      severity, code, details: { text }, diagnostics: text,
    }],
  };
}

export function sendFhir(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': FHIR_CONTENT_TYPE,
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** A header's value as one string (repeated headers joined with commas). */
export function headerValue(req, name) {
  const value = req.headers?.[name];
  return Array.isArray(value) ? value.join(',') : value;
}
