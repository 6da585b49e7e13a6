// The harness's FHIR repository: @medplum/fhir-router's MemoryRepository plus
// what a real server keeps and the in-memory one does not:
//
// - a write log of every version (create, update, delete) in order, for
//   type- and system-level history and for history entries of deletions;
// - tombstones, so that reading a deleted resource answers 410 Gone;
// - server-assigned meta.versionId / meta.lastUpdated (a client's are ignored);
// - transactions that roll back: withTransaction snapshots the store and
//   restores it when the callback throws.
//
// The store is only touched from synchronous code between awaits of
// already-resolved promises, so a transaction never interleaves with another
// request's writes.

import {
  OperationOutcomeError, generateId, gone, notFound,
} from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';

/** `Type/id`. */
export const refKey = (resourceType, id) => `${resourceType}/${id}`;

export class HarnessRepository extends MemoryRepository {
  constructor() {
    super();
    // Every write, oldest first:
    // { resourceType, id, versionId, lastUpdated, method: 'POST'|'PUT'|'DELETE', resource? }
    // `resource` is the stored (never mutated) version object.
    this.writeLog = [];
    // `Type/id` -> the DELETE log entry of a deleted resource.
    this.tombstones = new Map();
    this.transactionDepth = 0;
    // Bumped by every write; cached search results of an older generation are stale.
    this.generation = 0;
  }

  clear() {
    this.generation += 1;
    super.clear();
    this.writeLog.length = 0;
    this.tombstones.clear();
  }

  /** True when `Type/id` currently exists (not deleted). */
  exists(resourceType, id) {
    // `resources` / `history` are private TypeScript fields of MemoryRepository.
    return this.resources.get(resourceType)?.has(id) ?? false;
  }

  /** The stored (shared, read-only) current resources of one type. */
  storedResources(resourceType) {
    return this.resources.get(resourceType)?.values() ?? [][Symbol.iterator]();
  }

  /** Resource types with at least one current resource. */
  resourceTypes() {
    return [...this.resources.entries()].filter(([, m]) => m.size > 0).map(([t]) => t);
  }

  async createResource(resource, options) {
    const type = resource?.resourceType;
    const input = { ...resource };
    if (input.meta) {
      input.meta = { ...input.meta };
      delete input.meta.versionId;
      delete input.meta.lastUpdated;
    }
    const known = typeof input.id === 'string' && (this.history.get(type)?.has(input.id) ?? false);
    const result = await super.createResource(input, options);
    this.generation += 1;
    const stored = this.resources.get(result.resourceType).get(result.id);
    this.tombstones.delete(refKey(result.resourceType, result.id));
    this.writeLog.push({
      resourceType: result.resourceType,
      id: result.id,
      versionId: stored.meta.versionId,
      lastUpdated: stored.meta.lastUpdated,
      method: known ? 'PUT' : 'POST',
      resource: stored,
    });
    return result;
  }

  /** Deleting an already deleted resource succeeds without a new version. */
  async deleteResource(resourceType, id) {
    if (this.tombstones.has(refKey(resourceType, id))) return;
    await super.deleteResource(resourceType, id);
    this.generation += 1;
    const entry = {
      resourceType, id, versionId: generateId(), lastUpdated: new Date().toISOString(), method: 'DELETE',
    };
    this.writeLog.push(entry);
    this.tombstones.set(refKey(resourceType, id), entry);
  }

  async readResource(resourceType, id) {
    if (this.tombstones.has(refKey(resourceType, id))) {
      throw new OperationOutcomeError(gone);
    }
    return super.readResource(resourceType, id);
  }

  /** vread: old versions of a deleted resource stay readable; the deletion itself is 410. */
  async readVersion(resourceType, id, versionId) {
    const versions = this.history.get(resourceType)?.get(id);
    if (!versions) throw new OperationOutcomeError(notFound);
    const version = versions.find((v) => v.meta?.versionId === versionId);
    if (version) return structuredClone(version);
    if (this.tombstones.get(refKey(resourceType, id))?.versionId === versionId) {
      throw new OperationOutcomeError(gone);
    }
    throw new OperationOutcomeError(notFound);
  }

  /** Instance history, newest first (MemoryRepository's reverses its list in place). */
  async readHistory(resourceType, id) {
    const entries = this.historyEntries({ resourceType, id });
    if (entries.length === 0) throw new OperationOutcomeError(notFound);
    const entry = entries.filter((e) => e.resource).map((e) => ({ resource: structuredClone(e.resource) }));
    return { resourceType: 'Bundle', type: 'history', ...(entry.length ? { entry } : undefined) };
  }

  /**
   * Write-log entries, newest first, optionally restricted to one type, one
   * resource and versions written at or after `since` (ISO instant).
   */
  historyEntries({ resourceType, id, since } = {}) {
    const sinceMs = since === undefined ? undefined : Date.parse(since);
    const out = [];
    for (let i = this.writeLog.length - 1; i >= 0; i -= 1) {
      const e = this.writeLog[i];
      if (resourceType !== undefined && e.resourceType !== resourceType) continue;
      if (id !== undefined && e.id !== id) continue;
      if (sinceMs !== undefined && Date.parse(e.lastUpdated) < sinceMs) continue;
      out.push(e);
    }
    return out;
  }

  async withTransaction(callback) {
    if (this.transactionDepth > 0) return callback(undefined);
    const snapshot = this.snapshot();
    this.transactionDepth += 1;
    try {
      return await callback(undefined);
    } catch (err) {
      this.restore(snapshot);
      throw err;
    } finally {
      this.transactionDepth -= 1;
    }
  }

  snapshot() {
    return {
      resources: [...this.resources].map(([type, byId]) => [type, new Map(byId)]),
      history: [...this.history].map(([type, byId]) => [
        type, new Map([...byId].map(([id, versions]) => [id, [...versions]])),
      ]),
      logLength: this.writeLog.length,
      tombstones: new Map(this.tombstones),
    };
  }

  restore(snapshot) {
    this.generation += 1;
    this.resources.clear();
    for (const [type, byId] of snapshot.resources) this.resources.set(type, byId);
    this.history.clear();
    for (const [type, byId] of snapshot.history) this.history.set(type, byId);
    this.writeLog.length = snapshot.logLength;
    this.tombstones.clear();
    for (const [key, entry] of snapshot.tombstones) this.tombstones.set(key, entry);
  }
}
