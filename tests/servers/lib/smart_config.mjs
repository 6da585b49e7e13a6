// The SMART configuration document served at
// GET /fhir/.well-known/smart-configuration.
//
// Built from the enabled grant types: `client_credentials` (Backend Services)
// and `authorization_code` (App Launch; its refresh tokens need no grant type
// value of their own, SMART's list has none for them).

import { CLIENT_ASSERTION_ALGS } from './config.mjs';

/** Capabilities advertised for each supported grant type. */
const CAPABILITIES_BY_GRANT = {
  client_credentials: ['client-confidential-asymmetric'],
  authorization_code: [
    'launch-ehr', 'launch-standalone', 'authorize-post',
    'client-public', 'client-confidential-symmetric', 'client-confidential-asymmetric',
    'sso-openid-connect',
    'context-ehr-patient', 'context-ehr-encounter', 'context-standalone-patient',
    'context-banner', 'context-style',
    'permission-offline', 'permission-online', 'permission-patient', 'permission-user',
  ],
};

/** Client authentication methods for each grant type (Backend Services: asymmetric only). */
const AUTH_METHODS_BY_GRANT = {
  client_credentials: ['private_key_jwt'],
  authorization_code: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
};

const PERMISSION_CAPABILITIES = ['permission-v1', 'permission-v2'];

/**
 * @param {object} opts
 * @param {string} opts.issuer
 * @param {string} opts.jwksUri
 * @param {string} opts.tokenEndpoint
 * @param {string[]} opts.grantTypes    e.g. ['client_credentials', 'authorization_code']
 * @param {string[]} opts.scopes        scopes_supported
 * @param {object} [opts.endpoints]     extra endpoints (authorization_endpoint, introspection_endpoint, ...)
 */
export function smartConfiguration({
  issuer, jwksUri, tokenEndpoint, grantTypes, scopes, endpoints = {},
}) {
  const capabilities = new Set();
  const authMethods = new Set();
  for (const grant of grantTypes) {
    for (const cap of CAPABILITIES_BY_GRANT[grant] ?? []) capabilities.add(cap);
    for (const method of AUTH_METHODS_BY_GRANT[grant] ?? []) authMethods.add(method);
  }
  for (const cap of PERMISSION_CAPABILITIES) capabilities.add(cap);
  const appLaunch = grantTypes.includes('authorization_code');
  return {
    issuer,
    jwks_uri: jwksUri,
    token_endpoint: tokenEndpoint,
    ...endpoints,
    grant_types_supported: [...grantTypes],
    ...(appLaunch ? { response_types_supported: ['code'] } : {}),
    token_endpoint_auth_methods_supported: [...authMethods],
    token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
    code_challenge_methods_supported: ['S256'],
    capabilities: [...capabilities],
    scopes_supported: [...scopes],
  };
}
