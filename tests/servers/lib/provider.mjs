// oidc-provider (OpenID-certified OAuth 2.0 server) configured as the SMART
// authorization server, mounted under /oidc.
//
// Current scope: SMART Backend Services (client_credentials grant with
// private_key_jwt client authentication). Access tokens are JWTs signed with
// the provider's own key, with `aud` = the FHIR base URL and a `scope` claim.
//
// To add SMART App Launch later: add `authorization_code`/`refresh_token` to
// the client grant_types, enable PKCE (`pkce.required`), provide
// `findAccount`, `interactions.url` (auto-consent), `extraTokenClaims` for
// launch context (patient, encounter, fhirUser) and the `claims` for id_token.

import { randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';
// The default implementation is not part of the package's public exports,
// but the package has no "exports" map, so its own module is importable.
import { defaults as providerDefaults } from 'oidc-provider/lib/helpers/defaults.js';
import { decodeJwt } from 'jose';

import { CLIENT_ASSERTION_ALGS } from './config.mjs';
import { allowedScopes } from './scopes.mjs';

/** Upper bound on `exp - now` of a client assertion (SMART Backend Services). */
export const MAX_CLIENT_ASSERTION_LIFETIME = 300;

/** Algorithm of the provider's access-token signing key. */
export const ACCESS_TOKEN_ALG = 'RS256';

const epochNow = () => Math.floor(Date.now() / 1000);

/** Registration metadata for one CONFIG client. */
function clientMetadata(client) {
  return {
    client_id: client.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    ...(client.jwks ? { jwks: client.jwks } : { jwks_uri: client.jwks_uri }),
  };
}

/**
 * SMART's extra check on the client assertion: `exp` no more than five minutes
 * in the future. oidc-provider itself already looks the client up by `sub`,
 * requires iss = client_id, verifies the signature against the client's keys,
 * requires `exp` (not past, 15 s clock tolerance) and `jti`, checks `aud`
 * (token endpoint URL or issuer) and rejects a replayed `jti`.
 */
async function assertJwtClientAuthClaimsAndHeader(ctx, claims, header, client) {
  await providerDefaults.assertJwtClientAuthClaimsAndHeader(ctx, claims, header, client);
  if (typeof claims.exp !== 'number' || claims.exp - epochNow() > MAX_CLIENT_ASSERTION_LIFETIME) {
    throw new errors.InvalidClientAuth(
      `client assertion exp must be at most ${MAX_CLIENT_ASSERTION_LIFETIME} seconds in the future`,
    );
  }
}

/**
 * oidc-provider routes outgoing requests (the clients' jwks_uri) through a
 * dispatcher that refuses loopback addresses. Every server of the harness
 * lives on 127.0.0.1, so drop that dispatcher.
 */
function loopbackFetch(url, options) {
  const { dispatcher, ...rest } = options;
  return globalThis.fetch(url, rest);
}

/** The client id a token request claims to be, for bookkeeping only (unverified). */
export function claimedClientId(ctx) {
  const fromContext = ctx.oidc?.client?.clientId;
  if (fromContext) return fromContext;
  const body = ctx.oidc?.body ?? {};
  if (typeof body.client_id === 'string' && body.client_id) return body.client_id;
  if (typeof body.client_assertion === 'string') {
    try {
      const { iss, sub } = decodeJwt(body.client_assertion);
      if (typeof iss === 'string' && iss) return iss;
      if (typeof sub === 'string' && sub) return sub;
    } catch {
      // not a JWT: fall through
    }
  }
  return '(unknown)';
}

/**
 * Creates the provider.
 *
 * @param {object} opts
 * @param {string} opts.issuer       `http://127.0.0.1:PORT/oidc`
 * @param {string} opts.fhirBase     `http://127.0.0.1:PORT/fhir` (resource indicator and `aud`)
 * @param {string} opts.otherResource a second resource indicator whose tokens
 *                                   the FHIR endpoint must refuse (foreign `aud`)
 * @param {object[]} opts.clients    validated CONFIG clients
 * @param {number} opts.accessTokenTtl seconds
 * @param {object} opts.signingJwk   private JWK used to sign access tokens
 * @param {object} opts.state        shared harness state (stats, issued tokens)
 * @param {(msg: string) => void} opts.log
 */
export function createProvider({
  issuer, fhirBase, otherResource, clients, accessTokenTtl, signingJwk, state, log,
}) {
  const scopeString = allowedScopes().join(' ');

  const resourceServer = {
    scope: scopeString,
    audience: fhirBase,
    accessTokenTTL: accessTokenTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: ACCESS_TOKEN_ALG } },
  };

  const provider = new Provider(issuer, {
    clients: clients.map(clientMetadata),
    jwks: { keys: [signingJwk] },
    clientAuthMethods: ['private_key_jwt'],
    responseTypes: ['code'],
    enabledJWA: {
      clientAuthSigningAlgValues: [...CLIENT_ASSERTION_ALGS],
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => fhirBase,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator === fhirBase) return resourceServer;
          if (resourceIndicator === otherResource) return { ...resourceServer, audience: otherResource };
          throw new errors.InvalidTarget(`unknown resource indicator; use ${fhirBase}`);
        },
      },
    },
    ttl: {
      AccessToken: () => accessTokenTtl,
      ClientCredentials: () => accessTokenTtl,
    },
    assertJwtClientAuthClaimsAndHeader,
    fetch: loopbackFetch,
    clientBasedCORS: () => false,
    renderError: (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });

  // Count every POST to the token endpoint, successful or not. This
  // middleware runs before the provider's router; after `next()` the parsed
  // body and the resolved client (if any) are available on ctx.oidc.
  provider.use(async (ctx, next) => {
    const isTokenRequest = ctx.method === 'POST' && ctx.path === '/token';
    try {
      await next();
    } finally {
      if (isTokenRequest) {
        const clientId = claimedClientId(ctx);
        state.recordTokenRequest(clientId);
        log(`token request client=${clientId} status=${ctx.status}`);
      }
    }
  });

  // Remember every issued access token so that /_harness/revoke-all can
  // invalidate all tokens issued up to that moment.
  for (const event of ['client_credentials.issued', 'access_token.issued']) {
    provider.on(event, (token) => state.recordIssuedToken(token.jti));
  }
  provider.on('server_error', (ctx, err) => log(`oidc-provider server_error: ${err?.stack ?? err}`));
  provider.on('grant.error', (ctx, err) => {
    log(`token error: ${err.error} (${err.error_description}${err.error_detail ? `; ${err.error_detail}` : ''})`);
  });

  return provider;
}
