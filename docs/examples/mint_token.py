"""How an organiser's backend mints a Tally user token (docs/architecture.md, "User identity").

Run with PyJWT installed (`pip install "pyjwt[crypto]"`):

    TALLY_JWT_HS256_SECRET=... python3 mint_token.py u1 [group]

prints a token for user `u1` (optionally in priority group `group`) that Tally accepts for
five minutes. The test suite runs this file, so it stays true.
"""

import os
import sys
import time

import jwt  # PyJWT

user = sys.argv[1]
claims = {
    "sub": user,  # the user Tally acts for: registrations, claims, status reads
    "iss": os.environ.get("TALLY_JWT_ISSUER", "https://site.example"),
    "aud": os.environ.get("TALLY_JWT_AUDIENCE", "tally"),
    "iat": int(time.time()),
    "exp": int(time.time()) + 300,  # short-lived: mint one per page load or session
}
if len(sys.argv) > 2:
    claims["tally_group"] = sys.argv[2]  # the priority group this user is entitled to

# HS256 with the secret shared with Tally. With a key pair instead, publish the public key in
# a JWKS and sign with the private one:
#   jwt.encode(claims, private_pem, algorithm="ES256", headers={"kid": "site-key-1"})
print(jwt.encode(claims, os.environ["TALLY_JWT_HS256_SECRET"], algorithm="HS256"))
