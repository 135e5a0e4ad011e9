"""Standard Webhooks signatures (``signing``): sign and verify a body with a
secret, for partners' callbacks in and notifications out. Pure; imports only domain."""
