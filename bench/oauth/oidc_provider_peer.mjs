// The peer for bench/oauth: panva's node `oidc-provider` serving only what the benchmark
// measures — the client-credentials grant at its token endpoint — configured like bastion:
// one confidential client (client_secret_basic), scope `read`, an RFC 8707 resource whose
// access tokens are RFC 9068 JWTs (typ at+jwt) signed with ES256, lifetime 900 s.
//
// Started by bench/oauth/run.py (pinned to one core with taskset); configuration comes from
// the environment so the harness owns every value:
//   PEER_PORT, PEER_CLIENT_ID, PEER_CLIENT_SECRET, PEER_AUDIENCE, PEER_SCOPE, PEER_TTL,
//   PEER_TLS_CERT + PEER_TLS_KEY (both set: serve HTTPS with that PEM pair, else plain HTTP).
// It prints one line "ready <url>" on stdout once it accepts connections.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider, { errors } from 'oidc-provider';

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
const audience = need('PEER_AUDIENCE');
const scope = need('PEER_SCOPE');
const ttl = Number(need('PEER_TTL'));
const certFile = process.env.PEER_TLS_CERT;
const keyFile = process.env.PEER_TLS_KEY;
const tls = Boolean(certFile && keyFile);
const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;

// A fresh P-256 signing key per run, as bastion generates its own on first start.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'ES256',
};

const resourceServer = {
  scope,
  audience,
  accessTokenTTL: ttl,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'ES256' } },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope,
    },
  ],
  jwks: { keys: [signingKey] },
  // Only ES256 keys exist; ID tokens never occur here but the default (RS256) needs a key.
  clientDefaults: {
    grant_types: ['client_credentials'],
    id_token_signed_response_alg: 'ES256',
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  scopes: [scope],
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Like a bastion client's default audience: no `resource` parameter needed.
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== audience) {
          throw new errors.InvalidTarget();
        }
        return resourceServer;
      },
    },
  },
  ttl: { ClientCredentials: ttl },
});

const server = tls
  ? https.createServer(
      { cert: readFileSync(certFile), key: readFileSync(keyFile) },
      provider.callback(),
    )
  : http.createServer(provider.callback());

server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
