// oidc-provider (OpenID-certified OAuth 2.0 server) configured as the SMART
// authorization server, mounted under /oidc.
//
// - SMART Backend Services: client_credentials with private_key_jwt.
// - SMART App Launch: authorization_code with PKCE (S256, always required),
//   the SMART `aud` and `launch` authorize parameters (validated extraParams),
//   an auto-approving interaction (./launch.mjs), refresh tokens with rotation
//   for `offline_access` / `online_access`, ID tokens with `fhirUser`,
//   introspection and revocation. Public, client_secret_basic,
//   client_secret_post and private_key_jwt clients.
//
// Access tokens are JWTs signed with the provider's own RS256 key, with `aud` =
// the FHIR base URL and a `scope` claim.

import { randomBytes } from 'node:crypto';

import Provider, { errors, interactionPolicy } from 'oidc-provider';
// The default implementation is not part of the package's public exports,
// but the package has no "exports" map, so its own module is importable.
import { defaults as providerDefaults } from 'oidc-provider/lib/helpers/defaults.js';
import { decodeJwt } from 'jose';

import { CLIENT_ASSERTION_ALGS, CLIENT_AUTH_METHODS, ID_TOKEN_ALGS } from './config.mjs';
import { keepOfflineAccess, launchMiddleware, launchProviderHooks } from './launch.mjs';
import { bindInteractiveGrant } from './interactive.mjs';
import { allowedScopes } from './scopes.mjs';

/** Upper bound on `exp - now` of a client assertion (SMART Backend Services). */
export const MAX_CLIENT_ASSERTION_LIFETIME = 300;

/** Algorithm of the provider's access-token signing key. */
export const ACCESS_TOKEN_ALG = 'RS256';

/** Algorithms of the provider's signing keys (access tokens: the first; ID tokens: any). */
export const SIGNING_ALGS = Object.freeze([...new Set([ACCESS_TOKEN_ALG, ...ID_TOKEN_ALGS])]);

/** Lifetimes (seconds) of the authorization flow's server-side records. */
const AUTHORIZATION_CODE_TTL = 60;
const INTERACTION_TTL = 600;
const SESSION_TTL = 14 * 24 * 3600;
const GRANT_TTL = 365 * 24 * 3600;

/** OpenID Connect scopes (the rest of the SMART scopes are resource scopes of the FHIR base). */
export const OIDC_SCOPES = Object.freeze(['openid', 'offline_access', 'fhirUser', 'profile']);

const epochNow = () => Math.floor(Date.now() / 1000);

/** Registration metadata for one (validated) CONFIG client. */
function clientMetadata(client) {
  const appLaunch = client.grant_types.includes('authorization_code');
  return {
    client_id: client.client_id,
    token_endpoint_auth_method: client.token_endpoint_auth_method,
    grant_types: [...client.grant_types],
    response_types: appLaunch ? ['code'] : [],
    redirect_uris: client.redirect_uris ?? [],
    application_type: client.application_type,
    ...(appLaunch ? { id_token_signed_response_alg: client.id_token_signed_response_alg } : {}),
    ...(client.jwks ? { jwks: client.jwks } : {}),
    ...(client.jwks_uri ? { jwks_uri: client.jwks_uri } : {}),
    ...(client.client_secret ? { client_secret: client.client_secret } : {}),
  };
}

/**
 * A refresh token for App Launch grants whose scope has `offline_access` or
 * `online_access` (SMART), when the client may use the refresh_token grant.
 * (oidc-provider's default knows only `offline_access`.)
 */
async function issueRefreshToken(ctx, client, source) {
  return client.grantTypeAllowed('refresh_token')
    && (source.scopes.has('offline_access') || source.scopes.has('online_access'));
}

/**
 * Who may introspect a token (oidc-provider's default rule, stated here):
 * a confidential client any token, a public client only its own.
 */
async function introspectionAllowed(ctx, client, token) {
  return client.clientAuthMethod !== 'none' || token.clientId === client.clientId;
}

/**
 * Who may revoke a token (oidc-provider's default rule): only the client it
 * was issued to; another public client is ignored (200), another confidential
 * client gets `invalid_request`.
 */
async function revocationAllowed(ctx, client, token) {
  if (token.clientId === client.clientId) return true;
  if (client.clientAuthMethod === 'none') return false;
  throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
}

/**
 * oidc-provider's interaction policy plus one consent check that always asks
 * for an interaction until this very request was approved, so that every
 * authorization goes through the harness's interaction route (which binds the
 * launch context to a new Grant), even with a reused session.
 */
function interactionPolicyAlwaysConsent() {
  const policy = interactionPolicy.base();
  policy.get('consent').checks.add(new interactionPolicy.Check(
    'smart_launch',
    'every authorization request is approved by the harness interaction',
    'consent_required',
    (ctx) => !ctx.oidc.result?.consent,
  ));
  return policy;
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
  const basic = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(ctx.headers?.authorization ?? '');
  if (basic) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) {
      try {
        return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
      } catch {
        // not form-encoded: fall through
      }
    }
  }
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
 * @param {object} opts.tokenSettings `{ accessTokenTtl, refreshTokenTtl, idTokenTtl }` in
 *                                   seconds, read whenever a token is issued (mutable)
 * @param {object[]} opts.signingJwks private JWKs (one per SIGNING_ALGS entry)
 * @param {object} opts.publicJwks   the public JWK Set of those keys
 * @param {string} opts.interactionBase URL prefix of the interaction route
 * @param {import('./launch.mjs').LaunchStore} opts.launchStore
 * @param {(ref: string) => Promise<object|undefined>} opts.readUser
 * @param {object} opts.state        shared harness state (stats, issued tokens)
 * @param {(msg: string) => void} opts.log
 */
export function createProvider({
  issuer, fhirBase, otherResource, clients, tokenSettings, signingJwks, publicJwks,
  interactionBase, launchStore, readUser, state, log, interactive = false,
}) {
  const scopeString = allowedScopes().join(' ');

  const resourceServer = (audience) => ({
    scope: scopeString,
    audience,
    accessTokenTTL: tokenSettings.accessTokenTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: ACCESS_TOKEN_ALG } },
  });

  const hooks = launchProviderHooks({ store: launchStore, fhirBase, readUser });

  const provider = new Provider(issuer, {
    clients: clients.map(clientMetadata),
    jwks: { keys: signingJwks },
    clientAuthMethods: [...CLIENT_AUTH_METHODS],
    responseTypes: ['code'],
    scopes: [...OIDC_SCOPES],
    claims: {
      openid: ['sub'],
      fhirUser: ['fhirUser'],
      profile: ['name', 'given_name', 'family_name', 'profile'],
    },
    extraParams: hooks.extraParams(errors),
    findAccount: hooks.findAccount,
    interactions: {
      // Interactive mode: oidc-provider's own pages, under its mount path.
      // (Interactive mode: oidc-provider's own pages, at its own URL.)
      url: (ctx, interaction) => `${interactionBase}/${interaction.uid}`,
      policy: interactionPolicyAlwaysConsent(),
    },
    pkce: { required: () => true },
    issueRefreshToken,
    rotateRefreshToken: true,
    enabledJWA: {
      clientAuthSigningAlgValues: [...CLIENT_ASSERTION_ALGS],
      idTokenSigningAlgValues: [...ID_TOKEN_ALGS],
    },
    // POSTed authorization requests (SMART `authorize-post`); oidc-provider
    // then requires SameSite=None on its long-lived (session) cookie.
    // Interactive mode serves a real browser on plain HTTP, which refuses a
    // SameSite=None cookie without Secure: GET only, and SameSite=Lax.
    enableHttpPostMethods: !interactive,
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      long: { httpOnly: true, sameSite: interactive ? 'lax' : 'none' },
    },
    features: {
      devInteractions: { enabled: interactive },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: introspectionAllowed },
      revocation: { enabled: true, allowedPolicy: revocationAllowed },
      // Access tokens are for the FHIR base; identity is in the ID token.
      userinfo: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => fhirBase,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator === fhirBase) return resourceServer(fhirBase);
          if (resourceIndicator === otherResource) return resourceServer(otherResource);
          throw new errors.InvalidTarget(`unknown resource indicator; use ${fhirBase}`);
        },
      },
    },
    ttl: {
      AccessToken: () => tokenSettings.accessTokenTtl,
      ClientCredentials: () => tokenSettings.accessTokenTtl,
      RefreshToken: () => tokenSettings.refreshTokenTtl,
      IdToken: () => tokenSettings.idTokenTtl,
      AuthorizationCode: () => AUTHORIZATION_CODE_TTL,
      Interaction: () => INTERACTION_TTL,
      Session: () => SESSION_TTL,
      // Outlives every refresh token (refresh fails once its grant expired).
      Grant: () => GRANT_TTL,
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
        const grantType = typeof ctx.oidc?.body?.grant_type === 'string' ? ctx.oidc.body.grant_type : '(none)';
        state.recordTokenRequest(clientId, grantType);
        log(`token request client=${clientId} grant_type=${grantType} status=${ctx.status}`);
      }
    }
  });

  // SMART apps ask for offline_access without prompt=consent.
  provider.use(keepOfflineAccess);

  // Interactive mode: a Grant made by oidc-provider's own consent page gets the
  // launch context when the authorization resumes with it.
  if (interactive) provider.use(bindInteractiveGrant({ store: launchStore, log }));

  // Launch context in token / introspection responses; introspection and
  // revocation of the JWT access tokens.
  provider.use(launchMiddleware({
    store: launchStore, state, issuer, publicJwks, algorithms: [ACCESS_TOKEN_ALG], log,
  }));

  // Remember every issued access token so that /_harness/revoke-all can
  // invalidate all tokens issued up to that moment.
  for (const event of ['client_credentials.issued', 'access_token.issued']) {
    provider.on(event, (token) => state.recordIssuedToken(token.jti));
  }
  // App Launch access tokens: remember their grant (launch context for
  // introspection; revoked with the grant).
  const tokensByGrant = new Map();
  provider.on('access_token.issued', (token) => {
    if (!token.grantId) return;
    launchStore.accessTokenGrants.set(token.jti, token.grantId);
    if (!tokensByGrant.has(token.grantId)) tokensByGrant.set(token.grantId, new Set());
    tokensByGrant.get(token.grantId).add(token.jti);
  });
  // A revoked grant (refresh token revoked, a rotated refresh token or a code
  // used twice) takes its JWT access tokens with it at /fhir.
  provider.on('grant.revoked', (ctx, grantId) => {
    const jtis = tokensByGrant.get(grantId) ?? new Set();
    for (const jti of jtis) state.revokeToken(jti);
    log(`grant revoked: ${jtis.size} access token(s) refused from now on`);
  });
  provider.on('server_error', (ctx, err) => log(`oidc-provider server_error: ${err?.stack ?? err}`));
  provider.on('grant.error', (ctx, err) => {
    log(`token error: ${err.error} (${err.error_description}${err.error_detail ? `; ${err.error_detail}` : ''})`);
  });

  return provider;
}
