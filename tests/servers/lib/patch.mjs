// PATCH bodies: JSON Patch (RFC 6902, `application/json-patch+json`) and
// FHIRPath Patch (a `Parameters` resource, `application/fhir+json`).
//
// Both apply to a copy of the resource. A malformed patch document is a
// PatchError with status 400; a well-formed patch that cannot be applied
// (failed `test`, missing path, ambiguous FHIRPath) has status 422.

import { getElementDefinition } from '@medplum/core';

export class PatchError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const malformed = (message) => new PatchError(400, message);
const unprocessable = (message) => new PatchError(422, message);

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function deepEqual(a, b) {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

// ---------------------------------------------------------------- JSON Patch

function parsePointer(pointer, where) {
  if (typeof pointer !== 'string') throw malformed(`${where}: must be a string JSON Pointer`);
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw malformed(`${where}: JSON Pointer must start with "/"`);
  return pointer.slice(1).split('/').map((t) => {
    const token = t.replace(/~1/g, '/').replace(/~0/g, '~');
    if (token === '__proto__') throw malformed(`${where}: unsupported member name "__proto__"`);
    return token;
  });
}

function arrayIndex(array, token, where, { allowEnd }) {
  if (allowEnd && token === '-') return array.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw unprocessable(`${where}: "${token}" is not an array index`);
  const index = Number(token);
  if (index > array.length || (!allowEnd && index === array.length)) {
    throw unprocessable(`${where}: index ${index} is out of bounds`);
  }
  return index;
}

/** The container of the pointer's last token and that token. */
function resolveParent(root, tokens, where) {
  let node = root;
  for (const token of tokens.slice(0, -1)) {
    if (Array.isArray(node)) {
      node = node[arrayIndex(node, token, where, { allowEnd: false })];
    } else if (isPlainObject(node) && Object.hasOwn(node, token)) {
      node = node[token];
    } else {
      throw unprocessable(`${where}: path does not exist`);
    }
  }
  if (!Array.isArray(node) && !isPlainObject(node)) throw unprocessable(`${where}: path does not exist`);
  return { parent: node, token: tokens[tokens.length - 1] };
}

function getAt(root, tokens, where) {
  if (tokens.length === 0) return root;
  const { parent, token } = resolveParent(root, tokens, where);
  if (Array.isArray(parent)) return parent[arrayIndex(parent, token, where, { allowEnd: false })];
  if (!Object.hasOwn(parent, token)) throw unprocessable(`${where}: path does not exist`);
  return parent[token];
}

function addAt(root, tokens, value, where) {
  if (tokens.length === 0) return value;
  const { parent, token } = resolveParent(root, tokens, where);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, token, where, { allowEnd: true }), 0, value);
  else parent[token] = value;
  return root;
}

function removeAt(root, tokens, where) {
  if (tokens.length === 0) throw unprocessable(`${where}: cannot remove the whole resource`);
  const { parent, token } = resolveParent(root, tokens, where);
  if (Array.isArray(parent)) {
    parent.splice(arrayIndex(parent, token, where, { allowEnd: false }), 1);
  } else {
    if (!Object.hasOwn(parent, token)) throw unprocessable(`${where}: path does not exist`);
    delete parent[token];
  }
  return root;
}

/** Applies an RFC 6902 JSON Patch to a copy of `document`. */
export function applyJsonPatch(document, operations) {
  if (!Array.isArray(operations)) throw malformed('JSON Patch body must be an array of operations');
  let root = structuredClone(document);
  operations.forEach((op, i) => {
    const where = `operation ${i}`;
    if (!isPlainObject(op) || typeof op.op !== 'string') throw malformed(`${where}: needs an "op" member`);
    const path = parsePointer(op.path, `${where} path`);
    const needsValue = ['add', 'replace', 'test'].includes(op.op);
    if (needsValue && !Object.hasOwn(op, 'value')) throw malformed(`${where}: "${op.op}" needs a "value"`);
    switch (op.op) {
      case 'add':
        root = addAt(root, path, structuredClone(op.value), where);
        break;
      case 'remove':
        root = removeAt(root, path, where);
        break;
      case 'replace':
        getAt(root, path, where);
        if (path.length === 0) {
          root = structuredClone(op.value);
        } else {
          root = removeAt(root, path, where);
          root = addAt(root, path, structuredClone(op.value), where);
        }
        break;
      case 'move': {
        const from = parsePointer(op.from, `${where} from`);
        if (path.length > from.length && from.every((t, k) => t === path[k])) {
          throw unprocessable(`${where}: cannot move a value into itself`);
        }
        const value = getAt(root, from, where);
        root = removeAt(root, from, where);
        root = addAt(root, path, value, where);
        break;
      }
      case 'copy': {
        const from = parsePointer(op.from, `${where} from`);
        root = addAt(root, path, structuredClone(getAt(root, from, where)), where);
        break;
      }
      case 'test':
        if (!deepEqual(getAt(root, path, where), op.value)) {
          throw unprocessable(`${where}: test failed at ${op.path}`);
        }
        break;
      default:
        throw malformed(`${where}: unknown op "${op.op}"`);
    }
  });
  return root;
}

// ------------------------------------------------------------ FHIRPath Patch

const SEGMENT = /^([A-Za-z][A-Za-z0-9_]*)(?:\[(0|[1-9][0-9]*)\])?$/;

/**
 * Parses the supported FHIRPath subset: `Type.elem.elem[2].elem` (names and
 * optional indexes). Returns [{name, index?}] for the parts after the type.
 */
function parseSimplePath(path, resourceType) {
  if (typeof path !== 'string' || path.length === 0) throw malformed('FHIRPath Patch: "path" is required');
  const segments = path.split('.');
  if (segments[0] !== resourceType) {
    throw unprocessable(`FHIRPath Patch: path "${path}" must start with ${resourceType}`);
  }
  return segments.slice(1).map((s) => {
    const m = SEGMENT.exec(s);
    if (!m) {
      throw unprocessable(`FHIRPath Patch: unsupported path "${path}" (supported: Type.name[.name][index])`);
    }
    if (m[1] === '__proto__') throw malformed('FHIRPath Patch: unsupported name "__proto__"');
    return { name: m[1], index: m[2] === undefined ? undefined : Number(m[2]) };
  });
}

/** The matched nodes of a simple path: [{value, holder, key, index?}]. */
function evaluate(resource, segments) {
  let nodes = [{ value: resource }];
  for (const { name, index } of segments) {
    const next = [];
    for (const node of nodes) {
      if (!isPlainObject(node.value) || !Object.hasOwn(node.value, name)) continue;
      const child = node.value[name];
      if (Array.isArray(child)) {
        child.forEach((item, i) => {
          if (index === undefined || index === i) next.push({ value: item, holder: node.value, key: name, index: i });
        });
      } else if (index === undefined || index === 0) {
        next.push({ value: child, holder: node.value, key: name });
      }
    }
    nodes = next;
  }
  return nodes;
}

function exactlyOne(nodes, path) {
  if (nodes.length !== 1) {
    throw unprocessable(`FHIRPath Patch: path "${path}" matches ${nodes.length} elements, expected 1`);
  }
  return nodes[0];
}

/** True when element `name` under `segments` of `resourceType` repeats (best effort). */
function isRepeating(resourceType, segments, name) {
  let type = resourceType;
  for (const { name: n } of segments) {
    type = getElementDefinition(type, n)?.type?.[0]?.code;
    if (!type) return false;
  }
  return getElementDefinition(type, name)?.isArray === true;
}

/** A part's value: its value[x], or an object built from its nested parts. */
function partValue(part) {
  const key = Object.keys(part).find((k) => k.startsWith('value') && k.length > 5);
  if (key) return structuredClone(part[key]);
  if (Array.isArray(part.part)) {
    const out = {};
    for (const sub of part.part) {
      if (!isPlainObject(sub) || typeof sub.name !== 'string' || sub.name === '__proto__') {
        throw malformed('FHIRPath Patch: a value part needs a "name"');
      }
      const v = partValue(sub);
      if (Object.hasOwn(out, sub.name)) out[sub.name] = [].concat(out[sub.name], v);
      else out[sub.name] = v;
    }
    return out;
  }
  throw malformed('FHIRPath Patch: "value" needs a value[x] or parts');
}

function operationParts(param, i) {
  const where = `FHIRPath Patch operation ${i}`;
  if (!isPlainObject(param) || param.name !== 'operation' || !Array.isArray(param.part)) {
    throw malformed(`${where}: every parameter must be an "operation" with parts`);
  }
  const parts = {};
  for (const part of param.part) {
    if (!isPlainObject(part) || typeof part.name !== 'string') throw malformed(`${where}: part without a name`);
    parts[part.name] = part;
  }
  const type = parts.type?.valueCode ?? parts.type?.valueString;
  if (typeof type !== 'string') throw malformed(`${where}: "type" (valueCode) is required`);
  return {
    type,
    path: parts.path?.valueString,
    name: parts.name?.valueString,
    value: parts.value ? partValue(parts.value) : undefined,
    index: parts.index?.valueInteger,
    source: parts.source?.valueInteger,
    destination: parts.destination?.valueInteger,
    where,
  };
}

/** True for a Parameters resource shaped like a FHIRPath Patch. */
export function isFhirPathPatch(body) {
  return isPlainObject(body) && body.resourceType === 'Parameters' && Array.isArray(body.parameter)
    && body.parameter.some((p) => p?.name === 'operation' && p.part?.some?.((x) => x?.name === 'type'));
}

function listAt(resource, segments, path) {
  if (segments.length === 0) throw unprocessable(`FHIRPath Patch: "${path}" is not a list`);
  const last = segments[segments.length - 1];
  if (last.index !== undefined) throw unprocessable(`FHIRPath Patch: "${path}" must name a list, not an item`);
  const holder = exactlyOne(evaluate(resource, segments.slice(0, -1)), path).value;
  const list = isPlainObject(holder) ? holder[last.name] : undefined;
  return { holder, key: last.name, list: Array.isArray(list) ? list : undefined };
}

function checkIndex(index, max, what, where) {
  if (!Number.isInteger(index) || index < 0 || index > max) {
    throw unprocessable(`${where}: ${what} ${index} out of range 0..${max}`);
  }
}

/**
 * Applies a FHIRPath Patch to a copy of `resource`. Supported operation
 * types: add, insert, delete, replace, move, on simple paths.
 */
export function applyFhirPathPatch(resource, parameters) {
  if (!isPlainObject(parameters) || parameters.resourceType !== 'Parameters' || !Array.isArray(parameters.parameter)) {
    throw malformed('FHIRPath Patch body must be a Parameters resource with "operation" parameters');
  }
  const root = structuredClone(resource);
  const type = root.resourceType;
  parameters.parameter.forEach((param, i) => {
    const op = operationParts(param, i);
    const segments = parseSimplePath(op.path, type);
    switch (op.type) {
      case 'add': {
        if (typeof op.name !== 'string' || op.name === '' || op.name === '__proto__') {
          throw malformed(`${op.where}: add needs a "name"`);
        }
        if (op.value === undefined) throw malformed(`${op.where}: add needs a "value"`);
        const target = exactlyOne(evaluate(root, segments), op.path).value;
        if (!isPlainObject(target)) throw unprocessable(`${op.where}: "${op.path}" is not an element`);
        const existing = target[op.name];
        if (Array.isArray(existing)) {
          existing.push(op.value);
        } else if (existing === undefined) {
          target[op.name] = isRepeating(type, segments, op.name) ? [op.value] : op.value;
        } else {
          throw unprocessable(`${op.where}: ${op.path}.${op.name} already has a value (use replace)`);
        }
        break;
      }
      case 'insert': {
        if (op.value === undefined) throw malformed(`${op.where}: insert needs a "value"`);
        const { holder, key, list } = listAt(root, segments, op.path);
        const items = list ?? [];
        checkIndex(op.index, items.length, 'index', op.where);
        items.splice(op.index, 0, op.value);
        holder[key] = items;
        break;
      }
      case 'delete': {
        const nodes = evaluate(root, segments);
        if (nodes.length === 0) break;
        const node = exactlyOne(nodes, op.path);
        if (node.holder === undefined) throw unprocessable(`${op.where}: cannot delete the resource`);
        if (node.index === undefined) {
          delete node.holder[node.key];
        } else {
          node.holder[node.key].splice(node.index, 1);
          if (node.holder[node.key].length === 0) delete node.holder[node.key];
        }
        break;
      }
      case 'replace': {
        if (op.value === undefined) throw malformed(`${op.where}: replace needs a "value"`);
        const node = exactlyOne(evaluate(root, segments), op.path);
        if (node.holder === undefined) throw unprocessable(`${op.where}: cannot replace the resource`);
        if (node.index === undefined) node.holder[node.key] = op.value;
        else node.holder[node.key][node.index] = op.value;
        break;
      }
      case 'move': {
        const { list } = listAt(root, segments, op.path);
        if (!list) throw unprocessable(`${op.where}: "${op.path}" is not a list`);
        checkIndex(op.source, list.length - 1, 'source', op.where);
        checkIndex(op.destination, list.length - 1, 'destination', op.where);
        const [item] = list.splice(op.source, 1);
        list.splice(op.destination, 0, item);
        break;
      }
      default:
        throw malformed(`${op.where}: unsupported type "${op.type}" (add, insert, delete, replace, move)`);
    }
  });
  return root;
}

/**
 * Applies a PATCH body: an array is JSON Patch; a Parameters resource is
 * FHIRPath Patch. `[{"fhirpathPatch": Parameters}]` is how a FHIRPath Patch
 * travels through a batch (see rest.mjs).
 */
export function applyPatchBody(resource, body) {
  if (Array.isArray(body) && body.length === 1 && isPlainObject(body[0]) && Object.hasOwn(body[0], 'fhirpathPatch')) {
    return applyFhirPathPatch(resource, body[0].fhirpathPatch);
  }
  if (Array.isArray(body)) return applyJsonPatch(resource, body);
  if (isPlainObject(body) && body.resourceType === 'Parameters') return applyFhirPathPatch(resource, body);
  throw malformed('PATCH body must be a JSON Patch array (application/json-patch+json) '
    + 'or a FHIRPath Patch Parameters resource (application/fhir+json)');
}
