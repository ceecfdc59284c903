// A local OpenID Connect provider standing in for INDIGO IAM in the demo and the tests.
// Users, groups and clients come from the environment (set by `gpuaf demo`):
//   IDP_ISSUER   e.g. http://127.0.0.1:8090
//   IDP_CLIENTS  JSON list of OIDC client registrations
//   IDP_USERS    JSON object: username -> {name, email, groups: [...]}
// Claims are IAM-like: preferred_username, groups, and wlcg.groups ("/group").
// Its login page accepts any password for a known user: it is for demonstrations only.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const modules = process.env.GPUAF_NODE_MODULES;
const { default: Provider } = await import(
  modules ? pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href : 'oidc-provider'
);

const issuer = new URL(process.env.IDP_ISSUER);
const clients = JSON.parse(process.env.IDP_CLIENTS || '[]');
const users = JSON.parse(process.env.IDP_USERS || '{}');
const SCOPES = 'openid profile email offline_access';

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
  },
  // first-party clients: no consent screen, the grant is created on first login
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES);
    await grant.save();
    return grant;
  },
  cookies: { keys: [process.env.IDP_COOKIE_KEY || 'gpuaf-demo-idp'] },
  ttl: { AccessToken: 3600, IdToken: 3600, RefreshToken: 86400, Session: 86400 },
});
provider.proxy = false;

const server = provider.listen(Number(issuer.port || 80), issuer.hostname, () => {
  console.log(`demo OIDC provider listening at ${issuer.href}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
