-- Contact verification: a code sent through a person's contact proves the address reaches
-- them. Keyed by person and contact name; verified_address is the address the code reached,
-- so a contact whose address changes in the file is unverified again.
CREATE TABLE contact_verifications (
    project_id        INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    person            TEXT NOT NULL,
    contact           TEXT NOT NULL,
    -- The address the pending code was sent to, its SHA-256, expiry and wrong tries.
    address           TEXT NOT NULL,
    code_hash         TEXT,
    expires_at        INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    verified_address  TEXT,
    verified_at       INTEGER,
    PRIMARY KEY (project_id, person, contact)
);
