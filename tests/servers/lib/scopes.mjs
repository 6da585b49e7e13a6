// SMART scopes: the list the authorization server grants, and the parser the
// FHIR endpoint uses to decide whether a token's scopes permit a request.
//
// SMART App Launch 2.x scopes: `<context>/<resourceType|*>.<permissions>`
// - context: patient | user | system
// - permissions (v2): a non-empty subset of the letters c r u d s, in that order
// - permissions (v1): read | write | *   (mapped read→rs, write→cud, *→cruds)

export const CONTEXTS = Object.freeze(['system', 'user', 'patient']);

/** Resource types the integration tests use; `*` is the wildcard. */
export const RESOURCE_TYPES = Object.freeze([
  '*', 'Patient', 'Observation', 'Encounter', 'Practitioner', 'Condition', 'Group',
]);

export const V2_LETTERS = 'cruds';
export const V1_PERMISSIONS = Object.freeze({ read: 'rs', write: 'cud', '*': 'cruds' });

/** Non-resource scopes the authorization server grants as well. */
export const OTHER_SCOPES = Object.freeze([
  'openid', 'fhirUser', 'profile', 'offline_access', 'online_access',
  'launch', 'launch/patient', 'launch/encounter',
]);

/** All 31 non-empty subsets of `cruds`, each in canonical order. */
export function v2PermissionStrings() {
  const out = [];
  for (let mask = 1; mask < 1 << V2_LETTERS.length; mask += 1) {
    let s = '';
    for (let bit = 0; bit < V2_LETTERS.length; bit += 1) {
      if (mask & (1 << bit)) s += V2_LETTERS[bit];
    }
    out.push(s);
  }
  return out;
}

/**
 * Every scope the FHIR resource server accepts. oidc-provider matches scopes
 * by exact string and silently drops requested scopes not in this list.
 */
export function allowedScopes() {
  const permissions = [...v2PermissionStrings(), ...Object.keys(V1_PERMISSIONS)];
  const scopes = [];
  for (const context of CONTEXTS) {
    for (const type of RESOURCE_TYPES) {
      for (const perm of permissions) {
        scopes.push(`${context}/${type}.${perm}`);
      }
    }
  }
  return [...scopes, ...OTHER_SCOPES];
}

const CLINICAL_SCOPE = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]*)\.([a-z*]+)$/;

/**
 * Parses one clinical scope into `{ context, resourceType, letters }` where
 * `letters` is a Set of v2 permission letters; returns null for anything else
 * (including v2 letters out of canonical order).
 */
export function parseClinicalScope(scope) {
  const m = CLINICAL_SCOPE.exec(scope);
  if (!m) return null;
  const [, context, resourceType, perm] = m;
  let letters;
  if (Object.hasOwn(V1_PERMISSIONS, perm)) {
    letters = V1_PERMISSIONS[perm];
  } else if (v2PermissionStrings().includes(perm)) {
    letters = perm;
  } else {
    return null;
  }
  return { context, resourceType, letters: new Set(letters) };
}

/** Parses a space-separated scope string into a list of clinical grants. */
export function grantsFromScopeString(scope) {
  if (typeof scope !== 'string') return [];
  return scope.split(' ').map(parseClinicalScope).filter(Boolean);
}

/**
 * True when the grants permit `letter` (one of c r u d s) on `resourceType`.
 * All three contexts (system/user/patient) are accepted alike for now.
 */
export function permits(grants, resourceType, letter) {
  return grants.some(
    (g) => g.letters.has(letter) && (g.resourceType === '*' || g.resourceType === resourceType),
  );
}
