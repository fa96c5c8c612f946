/*
 * pubkey.c - cheaper decoding of the server certificate's EC public key
 * in the load generator's TLS handshakes (OpenSSL 3.0).
 *
 * libssl parses the server's certificate in every full handshake, and
 * OpenSSL 3.0 decodes its public key through the provider decoder
 * framework, which builds a decoder chain from every decoder the
 * providers offer each time: about 1.2 M instructions per certificate,
 * a fifth of a whole client login, for a key of 65 bytes. OpenSSL takes
 * its older, direct decoding (an EC_KEY from the SubjectPublicKeyInfo,
 * ~0.25 M for the whole certificate) when an ENGINE supplies the key
 * type's methods, so that engines are not overridden by providers. This
 * registers such an engine for EC keys, with OpenSSL's own EC methods:
 * the keys are the same, every signature is still verified, and only
 * how the certificate's key gets into memory differs. All three servers
 * of the benchmark have P-256 certificates, so all gain the same.
 *
 * ENGINEs are deprecated in OpenSSL 3 and absent without engine support:
 * then nothing is done and the decoder framework is used.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/opensslconf.h>
#ifndef OPENSSL_NO_ENGINE
#include <openssl/engine.h>
#endif
#include <openssl/evp.h>

#include "loadgen-private.h"

#ifndef OPENSSL_NO_ENGINE
static EVP_PKEY_METHOD *ec_meth;
static const int ec_nids[] = { EVP_PKEY_EC };

/* ENGINE_PKEY_METHS_PTR: the list of nids, or the method of one. */
static int ec_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **pmeth,
			 const int **nids, int nid)
{
	if (!pmeth) {
		*nids = ec_nids;
		return 1;
	}
	*pmeth = nid == EVP_PKEY_EC ? ec_meth : NULL;
	return *pmeth != NULL;
}

bool lg_pubkey_fast_decode(void)
{
	const EVP_PKEY_METHOD *builtin = EVP_PKEY_meth_find(EVP_PKEY_EC);
	ENGINE *e = ENGINE_new();
	ec_meth = EVP_PKEY_meth_new(EVP_PKEY_EC, 0);
	if (!builtin || !e || !ec_meth)
		goto fail;
	EVP_PKEY_meth_copy(ec_meth, builtin);
	if (!ENGINE_set_id(e, "loadgen-ec") ||
	    !ENGINE_set_name(e, "loadgen: OpenSSL's EC methods") ||
	    !ENGINE_set_pkey_meths(e, ec_pkey_meths) || !ENGINE_init(e))
		goto fail;
	bool ok = ENGINE_set_default_pkey_meths(e);
	/* The default-method table holds its own references (released by
	 * OpenSSL's clean-up at exit); ours go. */
	ENGINE_finish(e);
	if (!ok)
		goto fail;
	ENGINE_free(e);
	return true;
fail:
	ENGINE_free(e);
	EVP_PKEY_meth_free(ec_meth);
	ec_meth = NULL;
	return false;
}
#else
bool lg_pubkey_fast_decode(void)
{
	return false;
}
#endif
