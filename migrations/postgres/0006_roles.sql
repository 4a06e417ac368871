-- Roles (issue 17), kept apart from groups, with per-provider provenance like idp_groups.
ALTER TABLE jit_users ADD COLUMN roles JSONB NOT NULL DEFAULT '[]';
ALTER TABLE jit_users ADD COLUMN idp_roles JSONB NOT NULL DEFAULT '{}';
