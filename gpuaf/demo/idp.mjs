// A local OpenID Connect provider standing in for INDIGO IAM in the demo and the tests.
// Users, groups and clients come from the environment (set by `gpuaf demo`):
//   IDP_ISSUER   e.g. http://127.0.0.1:8090
//   IDP_CLIENTS  JSON list of OIDC client registrations
//   IDP_USERS    JSON object: username -> {name, email, groups: [...]}
// Claims are IAM-like: preferred_username, groups, and wlcg.groups ("/group").
// Its login page accepts any password for a known user: it is for demonstrations only.
//
// Optional, off unless IDP_JWT_AUDIENCE is set: access tokens become IAM-like JWTs (WLCG
// profile) for one resource server, as IAM issues them for the portal API:
//   IDP_JWT_AUDIENCE  the tokens' `aud`, e.g. gpuaf (the API's iam.audience)
//   IDP_JWT_RESOURCE  resource indicator of the API (default urn:gpuaf:api); requests
//                     without `resource` get it by default
//   IDP_JWT_TTL       lifetime of access tokens in seconds (default 3600)
// Scopes compute.read/create/modify/cancel are then known: a client registered with
// `scope` (e.g. "compute.read") may ask only for those, with client_credentials too
// (which cannot ask for openid). Tokens of users carry preferred_username, groups and
// wlcg.groups; tokens of clients have the client id as `sub`.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const modules = process.env.GPUAF_NODE_MODULES;
const { default: Provider, errors } = await import(
  modules ? pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href : 'oidc-provider'
);

const issuer = new URL(process.env.IDP_ISSUER);
const clients = JSON.parse(process.env.IDP_CLIENTS || '[]');
const users = JSON.parse(process.env.IDP_USERS || '{}');
const SCOPES = 'openid profile email offline_access';

const jwtAudience = process.env.IDP_JWT_AUDIENCE;
const COMPUTE_SCOPES = 'compute.read compute.create compute.modify compute.cancel';
const RESOURCE = process.env.IDP_JWT_RESOURCE || 'urn:gpuaf:api';

function jwtAccessTokens() {
  if (!jwtAudience) return { features: {} };
  const ttl = Number(process.env.IDP_JWT_TTL || 3600);
  if (!Number.isInteger(ttl) || ttl < 1) throw new Error('IDP_JWT_TTL: a whole number of seconds');
  return {
    scopes: ['openid', 'offline_access', ...COMPUTE_SCOPES.split(' ')],
    async extraTokenClaims(ctx, token) {
      const user = token.accountId && users[token.accountId];
      if (!user) return { 'wlcg.ver': '1.0' };
      return {
        'wlcg.ver': '1.0',
        preferred_username: token.accountId,
        groups: user.groups,
        'wlcg.groups': user.groups.map((g) => `/${g}`),
      };
    },
    features: {
      resourceIndicators: {
        enabled: true,
        defaultResource(ctx, client, oneOf) {
          if (oneOf) return oneOf.includes(RESOURCE) ? RESOURCE : oneOf[0];
          return RESOURCE;
        },
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: COMPUTE_SCOPES,
            audience: jwtAudience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: ttl,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  };
}
const { features: jwtFeatures, ...jwtConfig } = jwtAccessTokens();

const provider = new Provider(issuer.href.replace(/\/$/, ''), {
  clients,
  async findAccount(ctx, sub) {
    const user = users[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          preferred_username: sub,
          name: user.name,
          email: user.email,
          email_verified: true,
          groups: user.groups,
          'wlcg.groups': user.groups.map((g) => `/${g}`),
        };
      },
    };
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups', 'wlcg.groups'],
    email: ['email', 'email_verified'],
  },
  conformIdTokenClaims: false, // the id token carries the profile claims, as IAM's does
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    ...jwtFeatures,
  },
  // first-party clients: no consent screen, the grant is created on first login
  // a refresh token for every client allowed the refresh_token grant (as IAM does for
  // offline_access), so sessions can keep their access token fresh
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES);
    if (jwtAudience) {
      grant.addOIDCScope(COMPUTE_SCOPES);
      grant.addResourceScope(RESOURCE, COMPUTE_SCOPES);
    }
    await grant.save();
    return grant;
  },
  cookies: { keys: [process.env.IDP_COOKIE_KEY || 'gpuaf-demo-idp'] },
  ttl: { AccessToken: Number(process.env.IDP_JWT_TTL || 3600), IdToken: 3600, RefreshToken: 86400, Session: 86400 },
  ...jwtConfig,
});
provider.proxy = false;

const server = provider.listen(Number(issuer.port || 80), issuer.hostname, () => {
  console.log(`demo OIDC provider listening at ${issuer.href}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
