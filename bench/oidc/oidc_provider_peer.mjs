// The peer for bench/oidc: panva's node `oidc-provider` serving the authorization code flow,
// configured like bastion: one confidential client (client_secret_basic) with one redirect URI,
// scope `openid`, PKCE (S256) required, ES256 ID tokens (300 s), codes valid 60 s.
//
// Its login and consent are not pages: GET /interaction/<uid> (where the provider sends a browser
// that needs them) signs in the bench account and grants `openid` to the client at once, through the
// documented Grant API and `provider.interactionFinished`. The harness drives that once, keeps the
// session cookie, and every measured authorize request then answers straight with a code.
//
// Started by bench/oidc/run.py (pinned to one core with taskset); configuration from the environment:
//   PEER_PORT, PEER_CLIENT_ID, PEER_CLIENT_SECRET, PEER_REDIRECT_URI, PEER_ACCOUNT.
// It prints one line "ready <url>" on stdout once it accepts connections.
// The module itself is installed by bench/oauth (package.json there); run.py runs a copy of this
// file from bench/oauth/node_modules so that the import resolves.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(need('PEER_PORT'));
const clientId = need('PEER_CLIENT_ID');
const clientSecret = need('PEER_CLIENT_SECRET');
const redirectUri = need('PEER_REDIRECT_URI');
const account = need('PEER_ACCOUNT');
const issuer = `http://127.0.0.1:${port}`;

// A fresh P-256 signing key per run, as bastion generates its own on first start.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'ES256',
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      scope: 'openid',
    },
  ],
  jwks: { keys: [signingKey] },
  scopes: ['openid'],
  claims: { openid: ['sub'] },
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
  },
  ttl: {
    AccessToken: 900,
    AuthorizationCode: 60,
    IdToken: 300,
    Grant: 86400,
    Interaction: 600,
    Session: 86400,
  },
});

// The whole "login + consent": sign in `account`, grant it `openid` for the client.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const grant = new provider.Grant({ accountId: account, clientId: details.params.client_id });
  grant.addOIDCScope('openid');
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: account }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
    return;
  }
  callback(req, res);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
