-- Roles (issue 17), kept apart from groups, with per-provider provenance like idp_groups_json.
ALTER TABLE jit_users ADD COLUMN roles_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jit_users ADD COLUMN idp_roles_json TEXT NOT NULL DEFAULT '{}';
