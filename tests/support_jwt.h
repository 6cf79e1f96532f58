/** @file JWT minting shared by the unit and the integration tests (libjwt; no services):
 *  signed tokens, and the pieces of forged ones. For cmocka tests: the functions fail the
 *  calling test on error. */
#ifndef BP_TESTS_SUPPORT_JWT_H
#define BP_TESTS_SUPPORT_JWT_H

#include <stddef.h>

#include <jwt.h>

/** Mint a token with @p alg over @p claims (a JSON object text) with @p key (the HMAC
 *  secret, or the PEM private key of RS*). @return a heap string (the caller's). */
char *tjwt_mint(jwt_alg_t alg, const char *key, const char *claims);

/** @return base64url (unpadded) of @p s, a heap string (the caller's). */
char *tjwt_b64url(const char *s);

/** An unsigned token: base64url(@p header) "." base64url(@p claims) "." (no signature),
 *  e.g. with the header {"alg":"none"}. @return a heap string (the caller's). */
char *tjwt_unsigned(const char *header, const char *claims);

/** @p token (header.payload.signature) with its payload replaced by @p claims: a valid
 *  signature over other claims. @return a heap string (the caller's). */
char *tjwt_swap_payload(const char *token, const char *claims);

/** @p claims (a JSON object text) with a member "pad" of @p pad_bytes 'x' added at its end:
 *  claims that make a token too large. @return a heap string (the caller's). */
char *tjwt_padded(const char *claims, size_t pad_bytes);

#endif
