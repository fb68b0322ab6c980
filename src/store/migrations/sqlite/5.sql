-- `tokens`, the API tokens of `phased serve`: a name, a role, and the SHA-256 of the
-- token (the token itself is shown once, never stored).
CREATE TABLE tokens (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role = 'read' OR role = 'deploy' OR role = 'admin'),
    hash        TEXT NOT NULL UNIQUE,           -- sha256 of the token, hex
    created_at  TEXT NOT NULL,
    last_used_at TEXT
);
