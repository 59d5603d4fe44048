// The relying party of tests/features/oidc, written with panva's openid-client (OpenID Certified).
// Two steps, driven from pytest (which plays the browser in between):
//   node rp.mjs start  <issuer> <client_id> <redirect_uri> <scope> <id_token_alg>
//     -> {"url", "verifier", "state", "nonce"}: discovery, then the authorization URL with PKCE S256
//   node rp.mjs finish <issuer> <client_id> <id_token_alg> <callback_url> <verifier> <state> <nonce>
//     -> {"claims", "userinfo", "refreshed", "scope"}: the code exchange (openid-client validates the
//        ID token: signature against the JWKS, iss, aud, exp, nonce, and the response's iss and state),
//        userinfo, then refresh; and the ID token for the logout
//   node rp.mjs logout <issuer> <client_id> <id_token_alg> <id_token> <post_logout_redirect_uri> <state>
//     -> {"url"}: the RP-initiated logout URL (buildEndSessionUrl, from discovery's end_session_endpoint)
import * as client from "openid-client";

async function config(issuer, clientId, alg) {
  return client.discovery(new URL(issuer), clientId, { id_token_signed_response_alg: alg }, client.None());
}

async function start([issuer, clientId, redirectUri, scope, alg]) {
  const cfg = await config(issuer, clientId, alg);
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(cfg, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
  });
  return { url: url.href, verifier, state, nonce };
}

async function finish([issuer, clientId, alg, callback, verifier, state, nonce]) {
  const cfg = await config(issuer, clientId, alg);
  const tokens = await client.authorizationCodeGrant(cfg, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(cfg, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(cfg, tokens.refresh_token);
  return {
    claims,
    id_token: tokens.id_token,
    userinfo,
    scope: tokens.scope,
    refreshed: {
      access_token_changed: refreshed.access_token !== tokens.access_token,
      refresh_token_changed: refreshed.refresh_token !== tokens.refresh_token,
      id_token_sub: refreshed.id_token ? refreshed.claims().sub : null,
    },
  };
}

async function logout([issuer, clientId, alg, idToken, postLogoutRedirectUri, state]) {
  const cfg = await config(issuer, clientId, alg);
  const url = client.buildEndSessionUrl(cfg, {
    id_token_hint: idToken,
    post_logout_redirect_uri: postLogoutRedirectUri,
    state,
  });
  return { url: url.href };
}

const [command, ...args] = process.argv.slice(2);
const steps = { start, finish, logout };
try {
  process.stdout.write(JSON.stringify(await steps[command](args)) + "\n");
} catch (error) {
  process.stdout.write(JSON.stringify({ error: String(error), code: error.code, cause: String(error.cause ?? "") }) + "\n");
  process.exitCode = 1;
}
