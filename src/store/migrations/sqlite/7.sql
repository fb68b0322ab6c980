-- `sessions`, the dashboard's sign-ins: the SHA-256 of the session cookie, the token
-- it was made with (revoking the token ends them) and when it expires.
CREATE TABLE sessions (
    hash        TEXT PRIMARY KEY,               -- sha256 of the cookie's value, hex
    token_name  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL                -- unix ms
) WITHOUT ROWID;
