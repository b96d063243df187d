-- depends: 0012.api-tokens
-- Which key the stored secret values are sealed with: a fingerprint (an HMAC of a fixed text
-- under the key), never the key. A process whose keys do not include it refuses to seal or open
-- anything, instead of sealing new values under a key that cannot open the old ones.
CREATE TABLE secret_key (
    id BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    fingerprint CHAR(16) NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);
