// SMART App Launch on top of oidc-provider: launch contexts, the auto-approving
// interaction, launch context in token and introspection responses, and
// introspection / revocation of the JWT access tokens oidc-provider itself
// refuses to handle.
//
// oidc-provider knows no SMART launch context. The harness keeps it here:
//
// - `POST /_harness/launch` stores an EHR launch context under an opaque id;
//   the authorize request names it in `launch` (an `extraParams` entry whose
//   validator refuses unknown ids with `invalid_request`).
// - `/_harness/standalone-context` holds the context of standalone launches
//   (default: the first seeded Patient).
// - The interaction route (`/interaction/<uid>`) logs the user in and grants
//   the requested scopes without a human, creating a new Grant every time, and
//   binds the resolved context to that Grant's id.
// - A middleware adds the Grant's context to every successful
//   `authorization_code` / `refresh_token` response of `/oidc/token` and to
//   active introspection responses.

import { randomBytes } from 'node:crypto';

import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';

/** A request for /_harness/launch or /_harness/standalone-context that is refused with 400. */
export class LaunchContextError extends Error {}

/** Resource types a `fhirUser` may name (SMART App Launch: Patient, Practitioner, ...). */
const USER_TYPES = ['Patient', 'Practitioner', 'PractitionerRole', 'RelatedPerson', 'Person'];
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const USER_REFERENCE = new RegExp(`^(${USER_TYPES.join('|')})/[A-Za-z0-9\\-.]{1,64}$`);

const CONTEXT_KEYS = [
  'patient', 'encounter', 'fhirContext', 'need_patient_banner', 'smart_style_url', 'intent', 'tenant',
];
const LAUNCH_KEYS = new Set([...CONTEXT_KEYS, 'fhirUser', 'extra']);

/** Token response members that `extra` may not override. */
const RESERVED_RESPONSE_KEYS = new Set([
  'access_token', 'token_type', 'expires_in', 'scope', 'id_token', 'refresh_token',
  'error', 'error_description', 'active', 'client_id', 'exp', 'iat', 'iss', 'sub', 'aud', 'jti',
  ...CONTEXT_KEYS, 'fhirUser',
]);

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Validates the JSON body of /_harness/launch or /_harness/standalone-context
 * and returns `{ context, fhirUser?, extra? }` (`context` holds only the SMART
 * context members that were given; `null` values are dropped).
 */
export function parseLaunchBody(body) {
  if (!isPlainObject(body)) throw new LaunchContextError('body must be a JSON object');
  const unknown = Object.keys(body).filter((k) => !LAUNCH_KEYS.has(k));
  if (unknown.length > 0) {
    throw new LaunchContextError(`unknown field(s): ${unknown.join(', ')} (allowed: ${[...LAUNCH_KEYS].join(', ')})`);
  }
  const context = {};
  for (const key of ['patient', 'encounter']) {
    const value = body[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string' || !FHIR_ID.test(value)) {
      throw new LaunchContextError(`${key} must be a FHIR id (not a reference)`);
    }
    context[key] = value;
  }
  if (body.fhirContext !== undefined && body.fhirContext !== null) {
    if (!Array.isArray(body.fhirContext) || !body.fhirContext.every(isPlainObject)) {
      throw new LaunchContextError('fhirContext must be an array of objects');
    }
    context.fhirContext = body.fhirContext;
  }
  if (body.need_patient_banner !== undefined && body.need_patient_banner !== null) {
    if (typeof body.need_patient_banner !== 'boolean') {
      throw new LaunchContextError('need_patient_banner must be true or false');
    }
    context.need_patient_banner = body.need_patient_banner;
  }
  for (const key of ['smart_style_url', 'intent', 'tenant']) {
    const value = body[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') throw new LaunchContextError(`${key} must be a string`);
    context[key] = value;
  }
  const out = { context };
  if (body.fhirUser !== undefined && body.fhirUser !== null) {
    const v = body.fhirUser;
    let absolute = false;
    if (typeof v === 'string') {
      try {
        absolute = ['http:', 'https:'].includes(new URL(v).protocol);
      } catch {
        absolute = false;
      }
    }
    if (typeof v !== 'string' || (!absolute && !USER_REFERENCE.test(v))) {
      throw new LaunchContextError(`fhirUser must be "Type/id" (Type one of ${USER_TYPES.join(', ')}) or an absolute URL`);
    }
    out.fhirUser = v;
  }
  if (body.extra !== undefined && body.extra !== null) {
    if (!isPlainObject(body.extra)) throw new LaunchContextError('extra must be a JSON object');
    const clash = Object.keys(body.extra).filter((k) => RESERVED_RESPONSE_KEYS.has(k));
    if (clash.length > 0) throw new LaunchContextError(`extra must not set ${clash.join(', ')}`);
    out.extra = body.extra;
  }
  return out;
}

/**
 * Launch contexts and what each Grant / access token was given.
 *
 * @param {object} opts
 * @param {string} opts.base            the FHIR base URL
 * @param {string} opts.defaultPatientId standalone launches' default patient
 * @param {string} opts.practitionerId  the default user (`Practitioner/<id>`)
 */
export class LaunchStore {
  constructor({ base, defaultPatientId, practitionerId }) {
    this.base = base;
    this.defaultPatientId = defaultPatientId;
    this.defaultUser = `Practitioner/${practitionerId}`;
    // launch id -> { context, fhirUser?, extra? }
    this.launches = new Map();
    this.standalone = { context: { patient: defaultPatientId } };
    // grant id -> { context, fhirUser, extra?, clientId, launch? }
    this.grants = new Map();
    // access-token jti -> grant id (App Launch tokens only)
    this.accessTokenGrants = new Map();
  }

  /** Stores an EHR launch context; returns its opaque id. */
  createLaunch(body) {
    const parsed = parseLaunchBody(body);
    const id = randomBytes(16).toString('base64url');
    this.launches.set(id, parsed);
    return id;
  }

  hasLaunch(id) {
    return typeof id === 'string' && this.launches.has(id);
  }

  /** Replaces the standalone context (`{}` = no context at all). */
  setStandalone(body) {
    this.standalone = parseLaunchBody(body);
    return this.standaloneView();
  }

  standaloneView() {
    return {
      ...this.standalone.context,
      ...(this.standalone.fhirUser ? { fhirUser: this.standalone.fhirUser } : {}),
      ...(this.standalone.extra ? { extra: this.standalone.extra } : {}),
    };
  }

  /** `fhirUser` as the id_token carries it: an absolute URL. */
  fhirUserUrl(user) {
    return /^https?:\/\//.test(user) ? user : `${this.base}/${user}`;
  }

  /**
   * What an authorization request gets: `{ context, fhirUser, extra?, launch? }`.
   * EHR launch (`launch` given): the stored context as is. Standalone: the
   * standalone context, `patient` only with `launch/patient` and `encounter`
   * only with `launch/encounter` in the scope. The user is the launch's (or
   * the standalone context's) `fhirUser`; otherwise, for a patient-facing
   * standalone launch (some `patient/` scope, no `user/` scope) the context
   * patient, and the seeded Practitioner in every other case.
   */
  resolve(params) {
    const scopes = new Set(typeof params.scope === 'string' ? params.scope.split(' ') : []);
    if (typeof params.launch === 'string' && params.launch) {
      const launch = this.launches.get(params.launch);
      if (!launch) return undefined;
      return {
        context: { ...launch.context },
        fhirUser: launch.fhirUser ?? this.defaultUser,
        extra: launch.extra,
        launch: params.launch,
      };
    }
    const { context: standalone, fhirUser, extra } = this.standalone;
    const context = { ...standalone };
    if (!scopes.has('launch/patient')) delete context.patient;
    if (!scopes.has('launch/encounter')) delete context.encounter;
    const clinical = [...scopes].filter((s) => /^(patient|user|system)\//.test(s));
    const patientFacing = clinical.some((s) => s.startsWith('patient/'))
      && !clinical.some((s) => s.startsWith('user/'));
    let user = fhirUser;
    if (!user && patientFacing && standalone.patient) user = `Patient/${standalone.patient}`;
    return { context, fhirUser: user ?? this.defaultUser, extra };
  }

  /** Members added to token and introspection responses for a grant. */
  responseFields(grantId) {
    const g = this.grants.get(grantId);
    if (!g) return undefined;
    return { ...(g.extra ?? {}), ...g.context };
  }
}

/**
 * What the provider configuration needs from the launch store: the
 * authorize-time parameter validators and the account lookup.
 *
 * @param {object} opts
 * @param {LaunchStore} opts.store
 * @param {string} opts.fhirBase
 * @param {(ref: string) => Promise<object|undefined>} opts.readUser the FHIR resource of a user reference
 */
export function launchProviderHooks({ store, fhirBase, readUser }) {
  return {
    /**
     * oidc-provider `extraParams` with validators: `aud` must be the FHIR base
     * (SMART App Launch), `launch` a known launch id.
     */
    extraParams(errors) {
      return {
        aud: async (ctx, value) => {
          if (value === undefined) {
            throw new errors.InvalidRequest(`missing aud parameter (the FHIR base URL ${fhirBase})`);
          }
          if (value !== fhirBase) {
            throw new errors.InvalidRequest(`aud must be the FHIR base URL ${fhirBase}`);
          }
        },
        launch: async (ctx, value) => {
          if (value !== undefined && !store.hasLaunch(value)) {
            throw new errors.InvalidRequest('unknown or expired launch parameter');
          }
        },
      };
    },

    /** oidc-provider `findAccount`: accounts are FHIR user references. */
    async findAccount(ctx, accountId) {
      if (typeof accountId !== 'string' || !accountId) return undefined;
      return {
        accountId,
        async claims() {
          const url = store.fhirUserUrl(accountId);
          const claims = { sub: accountId, fhirUser: url, profile: url };
          const resource = await readUser(accountId).catch(() => undefined);
          const name = resource?.name?.[0];
          if (name) {
            const given = Array.isArray(name.given) ? name.given.join(' ') : undefined;
            if (given) claims.given_name = given;
            if (typeof name.family === 'string') claims.family_name = name.family;
            const full = [given, name.family].filter(Boolean).join(' ');
            if (full) claims.name = full;
          }
          return claims;
        },
      };
    },
  };
}

/**
 * The interaction route `/interaction/<uid>`: approves every authorization
 * request at once (login + consent) and redirects to oidc-provider's resume
 * URL. Needs the `_interaction` cookie oidc-provider set on the redirect here.
 */
export function createInteractionHandler({
  provider, store, fhirBase, oidcScopes, resourceScopes, log, sendJson,
}) {
  async function approve(req, res) {
    const details = await provider.interactionDetails(req, res);
    const { params, session } = details;
    const resolved = store.resolve(params);
    if (!resolved) {
      // The launch validator normally refuses this before the interaction.
      await provider.interactionFinished(req, res, {
        error: 'invalid_request', error_description: 'unknown or expired launch parameter',
      }, { mergeWithLastSubmission: false });
      return;
    }
    const accountId = resolved.fhirUser;
    const requested = typeof params.scope === 'string' ? params.scope.split(' ').filter(Boolean) : [];
    const resource = typeof params.resource === 'string' ? params.resource : fhirBase;
    const grant = new provider.Grant({ accountId, clientId: params.client_id });
    const oidc = requested.filter((s) => oidcScopes.has(s));
    if (oidc.length > 0) grant.addOIDCScope(oidc.join(' '));
    const rs = requested.filter((s) => resourceScopes.has(s));
    if (rs.length > 0) grant.addResourceScope(resource, rs.join(' '));
    if (params.claims) {
      try {
        const claims = JSON.parse(params.claims);
        const names = [...Object.keys(claims.id_token ?? {}), ...Object.keys(claims.userinfo ?? {})];
        if (names.length > 0) grant.addOIDCClaims(names);
      } catch {
        // oidc-provider validated the claims parameter already
      }
    }
    const grantId = await grant.save();
    store.grants.set(grantId, {
      context: resolved.context,
      fhirUser: accountId,
      extra: resolved.extra,
      clientId: params.client_id,
      launch: resolved.launch,
    });

    log(`interaction ${details.uid}: auto-approved client=${params.client_id} user=${accountId} `
      + `launch=${resolved.launch ? 'ehr' : 'standalone'} context=${Object.keys(resolved.context).join(',') || '-'}`);
    const returnTo = await provider.interactionResult(req, res, {
      login: { accountId },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });

    // A session (cookie jar) reused for another user: switch the session's
    // account, which oidc-provider would otherwise answer at the resume step
    // with a logout confirmation form.
    if (session?.uid && session.accountId && session.accountId !== accountId) {
      const stored = await provider.Session.findByUid(session.uid);
      if (stored) {
        stored.loginAccount({ accountId });
        await stored.persist();
      }
    }

    res.writeHead(303, { Location: returnTo, 'Content-Length': 0 });
    res.end();
  }

  return async function handleInteraction(req, res) {
    req.resume();
    try {
      await approve(req, res);
    } catch (err) {
      // oidc-provider errors (a missing or stale interaction cookie, an
      // expired interaction or session) carry `error` / `error_description`.
      if (typeof err?.error !== 'string' || res.headersSent) throw err;
      log(`interaction ${req.url} -> 400 (${err.error}: ${err.error_description})`);
      sendJson(res, 400, {
        error: err.error,
        error_description: `${err.error_description}; a client must send back the cookies the authorization endpoint set`,
      });
    }
  };
}

/** Largest authorization request body the harness rewrites (oidc-provider's own limit). */
const MAX_AUTHORIZE_BODY = 56 * 1024;

/**
 * `prompt` with `consent` added when `scope` asks for `offline_access`:
 * oidc-provider drops `offline_access` from the scope of an authorization
 * request whose `prompt` lacks `consent` (OpenID Connect Core §11), but SMART
 * apps never send `prompt=consent`. `prompt=none` is left alone. Returns
 * undefined when nothing changes.
 */
function promptWithConsent(scope, prompt) {
  if (typeof scope !== 'string' || !scope.split(' ').includes('offline_access')) return undefined;
  const prompts = typeof prompt === 'string' ? prompt.split(' ').filter(Boolean) : [];
  if (prompts.includes('consent') || prompts.includes('none')) return undefined;
  return [...prompts, 'consent'].join(' ');
}

/**
 * Provider middleware for `/auth` (GET query or POST form): keeps a requested
 * `offline_access` by adding `consent` to `prompt` (see promptWithConsent).
 * The harness approves every request anyway, so this changes nothing else.
 */
export async function keepOfflineAccess(ctx, next) {
  if (ctx.path === '/auth' && ctx.method === 'GET') {
    const query = new URLSearchParams(ctx.querystring);
    const prompt = promptWithConsent(query.get('scope'), query.get('prompt') ?? undefined);
    if (prompt) {
      // oidc-provider derives its mount path from req.originalUrl minus the
      // URL: rewrite both.
      const { originalUrl } = ctx.req;
      const mount = typeof originalUrl === 'string' ? originalUrl.substring(0, originalUrl.indexOf(ctx.url)) : '';
      query.set('prompt', prompt);
      ctx.querystring = query.toString();
      ctx.req.originalUrl = `${mount}${ctx.url}`;
    }
  } else if (ctx.path === '/auth' && ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
    // Read the form here and hand it on as a parsed string (oidc-provider
    // uses `req.body` when the stream was consumed upstream).
    const chunks = [];
    let size = 0;
    for await (const chunk of ctx.req) {
      size += chunk.length;
      if (size > MAX_AUTHORIZE_BODY) ctx.throw(413, 'authorization request body too large');
      chunks.push(chunk);
    }
    const form = new URLSearchParams(Buffer.concat(chunks, size).toString('utf8'));
    const prompt = promptWithConsent(form.get('scope'), form.get('prompt') ?? undefined);
    if (prompt) form.set('prompt', prompt);
    ctx.req.body = form.toString();
  }
  return next();
}

/**
 * Provider middlewares (add with `provider.use` before anything else runs):
 *
 * - successful `authorization_code` / `refresh_token` responses of /token get
 *   the Grant's launch context;
 * - /token/introspection and /token/revocation handle the provider's own JWT
 *   access tokens (oidc-provider answers `unsupported_token_type` for any
 *   JWT): introspection verifies it and answers like oidc-provider does for
 *   opaque tokens, plus the launch context and `fhirUser`; revocation makes
 *   /fhir refuse it from then on;
 * - active introspection responses for refresh tokens get the context too.
 */
export function launchMiddleware({
  store, state, issuer, publicJwks, algorithms, log,
}) {
  const keys = createLocalJWKSet(publicJwks);

  async function verifyOwnJwt(token) {
    if (typeof token !== 'string') return undefined;
    try {
      decodeJwt(token);
    } catch {
      return undefined;
    }
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer, algorithms, typ: 'at+jwt', requiredClaims: ['exp', 'iat', 'jti'],
      });
      return payload;
    } catch {
      return undefined;
    }
  }

  /**
   * The launch context of a grant for an introspection response, with
   * `fhirUser` when the token's scope has `fhirUser` (SMART token introspection).
   */
  function introspectionFields(grantId, scope) {
    const g = grantId && store.grants.get(grantId);
    if (!g) return {};
    const withUser = typeof scope === 'string' && scope.split(' ').includes('fhirUser');
    return {
      ...store.responseFields(grantId),
      ...(withUser ? { fhirUser: store.fhirUserUrl(g.fhirUser) } : {}),
    };
  }

  return async function smartLaunchMiddleware(ctx, next) {
    const isPost = ctx.method === 'POST';
    const route = isPost && {
      '/token': 'token',
      '/token/introspection': 'introspection',
      '/token/revocation': 'revocation',
    }[ctx.path];
    await next();
    if (!route) return;

    if (route === 'token') {
      const grantType = ctx.oidc?.params?.grant_type;
      if (ctx.status !== 200 || !isPlainObject(ctx.body)) return;
      if (grantType !== 'authorization_code' && grantType !== 'refresh_token') return;
      const grantId = ctx.oidc?.entities?.Grant?.jti;
      const fields = grantId && store.responseFields(grantId);
      if (fields) Object.assign(ctx.body, fields);
      return;
    }

    const client = ctx.oidc?.client;
    if (route === 'introspection' && ctx.status === 200 && ctx.body?.active === true) {
      Object.assign(ctx.body, introspectionFields(ctx.oidc?.entities?.Grant?.jti, ctx.body.scope));
      return;
    }

    // oidc-provider refused a JWT (after authenticating the client).
    if (!client || ctx.status !== 400 || ctx.body?.error !== 'unsupported_token_type') return;
    const claims = await verifyOwnJwt(ctx.oidc.params?.token);
    const own = claims && claims.client_id === client.clientId;
    const publicClient = client.clientAuthMethod === 'none';
    if (route === 'introspection') {
      ctx.status = 200;
      ctx.type = 'json';
      const active = claims && !state.isRevoked(claims.jti)
        && claims.exp > Math.floor(Date.now() / 1000) && (own || !publicClient);
      ctx.body = active ? {
        ...introspectionFields(store.accessTokenGrants.get(claims.jti), claims.scope),
        active: true,
        client_id: claims.client_id,
        exp: claims.exp,
        iat: claims.iat,
        iss: claims.iss,
        sub: claims.sub,
        aud: claims.aud,
        jti: claims.jti,
        scope: claims.scope,
        token_type: 'Bearer',
      } : { active: false };
      log(`introspection of an access token by ${client.clientId}: active=${active ? 'true' : 'false'}`);
      return;
    }
    // revocation (RFC 7009: 200 for unknown or invalid tokens)
    if (claims && !own && !publicClient) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_request', error_description: 'client is not authorized to revoke the presented token' };
      return;
    }
    if (own) state.revokeToken(claims.jti);
    log(`revocation of an access token by ${client.clientId}: ${own ? 'revoked' : 'ignored'}`);
    ctx.status = 200;
    ctx.body = '';
  };
}
