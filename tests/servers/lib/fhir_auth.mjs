// Bearer-token protection of the FHIR endpoint.
//
// - Token verification: the access token is a JWT signed by oidc-provider's
//   own key; it is verified locally with that key (signature, iss, aud = FHIR
//   base, exp, typ at+jwt) and refused if /_harness/revoke-all revoked it.
// - Authorization: each request needs one SMART permission letter per
//   resource type it touches (see requiredPermissions).

import { createLocalJWKSet, errors as joseErrors, jwtVerify } from 'jose';

import { grantsFromScopeString, permits } from './scopes.mjs';

/** The result of a failed bearer check: HTTP 401 with this description. */
export class InvalidToken extends Error {}

const BEARER = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*$/i;

function describeJoseError(err) {
  if (err instanceof joseErrors.JWTExpired) return 'access token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return 'access token audience is not this FHIR server';
    if (err.claim === 'iss') return 'access token issuer is not this server';
    return `access token claim "${err.claim}" invalid`;
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'access token signature invalid';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'access token signed by an unknown key';
  return 'access token malformed';
}

/**
 * Returns `async (authorizationHeader) => { claims, grants }`, which throws
 * InvalidToken when the request must be answered with 401.
 */
export function createTokenVerifier({
  publicJwks, issuer, audience, algorithm, state,
}) {
  const keys = createLocalJWKSet(publicJwks);
  return async function verifyBearer(authorization) {
    if (typeof authorization !== 'string' || authorization.length === 0) {
      throw new InvalidToken('missing bearer token');
    }
    const m = BEARER.exec(authorization);
    if (!m) throw new InvalidToken('Authorization header is not a Bearer token');
    let payload;
    try {
      ({ payload } = await jwtVerify(m[1], keys, {
        issuer,
        audience,
        algorithms: [algorithm],
        typ: 'at+jwt',
        requiredClaims: ['exp', 'iat', 'jti'],
        clockTolerance: 0,
      }));
    } catch (err) {
      throw new InvalidToken(describeJoseError(err));
    }
    if (state.isRevoked(payload.jti)) throw new InvalidToken('access token revoked');
    return { claims: payload, grants: grantsFromScopeString(payload.scope) };
  };
}

function typesFromTypeParam(query) {
  const raw = query.get('_type');
  if (!raw) return ['*'];
  return raw.split(',').map((t) => t.trim()).filter(Boolean);
}

/**
 * The permissions a FHIR request needs: a list of `{ resourceType, letter }`
 * with letter one of c r u d s and resourceType `*` when the request spans all
 * types. `find(method, url)` is FhirRouter#find; `url` is relative to the base.
 *
 * - GET read / vread / history-instance      -> r
 * - GET search (type), POST _search, GET Type/_history,
 *   GET Patient/id/Type (compartment)        -> s (on the searched type)
 * - GET search-system (base?_type=A,B)      -> s on each type (or `*`)
 * - GET _history (system history)            -> s on `*`
 * - POST create                              -> c
 * - PUT update, PATCH                        -> u
 * - DELETE                                   -> d
 * - POST batch/transaction at the base       -> the union over its entries
 * - routes declaring `permissions` (rest.mjs) -> what they declare:
 *   Patient/id/$everything -> r on Patient; Type/$validate -> r or c
 * - other operations ($graphql)              -> r and s on `*`
 *
 * A `letter` of several letters means any one of them.
 */
export function requiredPermissions(find, method, url, body, depth = 0) {
  const route = find(method, url);
  if (!route) return [];
  const type = route.params?.resourceType ?? '*';
  const query = new URL(url, 'http://x/').searchParams;
  if (typeof route.data?.permissions === 'function') return route.data.permissions(route.params, query);
  switch (route.data?.interaction) {
    case 'read':
    case 'vread':
    case 'history-instance':
      return [{ resourceType: type, letter: 'r' }];
    case 'search-type':
    case 'history-type':
      return [{ resourceType: type, letter: 's' }];
    case 'history-system':
      return [{ resourceType: '*', letter: 's' }];
    case 'search-system':
      return typesFromTypeParam(query).map((t) => ({ resourceType: t, letter: 's' }));
    case 'create':
      return [{ resourceType: type, letter: 'c' }];
    case 'update':
    case 'patch':
      return [{ resourceType: type, letter: 'u' }];
    case 'delete':
      return [{ resourceType: type, letter: 'd' }];
    case 'batch': {
      if (depth > 0 || !Array.isArray(body?.entry)) return [];
      return body.entry.flatMap((entry) => {
        const m = entry?.request?.method;
        const u = entry?.request?.url;
        if (typeof m !== 'string' || typeof u !== 'string') return [];
        return requiredPermissions(find, m.toUpperCase(), u.replace(/^\//, ''), entry.resource, depth + 1);
      });
    }
    default:
      return [{ resourceType: '*', letter: 'r' }, { resourceType: '*', letter: 's' }];
  }
}

/** The needed permissions the grants do not cover, as SMART v2 scope strings. */
export function missingScopes(grants, needed) {
  const missing = new Set();
  for (const { resourceType, letter } of needed) {
    if (![...letter].some((l) => permits(grants, resourceType, l))) {
      missing.add(`system/${resourceType}.${letter[0]}`);
    }
  }
  return [...missing];
}
