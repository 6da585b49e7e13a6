// The SMART configuration document served at
// GET /fhir/.well-known/smart-configuration.
//
// Built from the enabled grant types so that adding SMART App Launch
// (`authorization_code`) only means passing the extra grant type and
// endpoints here.

import { CLIENT_ASSERTION_ALGS } from './config.mjs';

/** Capabilities advertised for each supported grant type. */
const CAPABILITIES_BY_GRANT = {
  client_credentials: ['client-confidential-asymmetric'],
  // authorization_code: ['launch-ehr', 'launch-standalone', 'client-public',
  //   'context-ehr-patient', 'context-standalone-patient', 'sso-openid-connect',
  //   'permission-offline', 'permission-patient', 'permission-user', ...],
};

const PERMISSION_CAPABILITIES = ['permission-v1', 'permission-v2'];

/**
 * @param {object} opts
 * @param {string} opts.issuer
 * @param {string} opts.jwksUri
 * @param {string} opts.tokenEndpoint
 * @param {string[]} opts.grantTypes    e.g. ['client_credentials']
 * @param {string[]} opts.scopes        scopes_supported
 * @param {object} [opts.endpoints]     extra endpoints (authorization_endpoint, ...)
 */
export function smartConfiguration({
  issuer, jwksUri, tokenEndpoint, grantTypes, scopes, endpoints = {},
}) {
  const capabilities = new Set();
  for (const grant of grantTypes) {
    for (const cap of CAPABILITIES_BY_GRANT[grant] ?? []) capabilities.add(cap);
  }
  for (const cap of PERMISSION_CAPABILITIES) capabilities.add(cap);
  return {
    issuer,
    jwks_uri: jwksUri,
    token_endpoint: tokenEndpoint,
    ...endpoints,
    grant_types_supported: [...grantTypes],
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
    code_challenge_methods_supported: ['S256'],
    capabilities: [...capabilities],
    scopes_supported: [...scopes],
  };
}
