WITH d AS (
    DELETE FROM bench.d_floor WHERE id = (SELECT nextval('bench.d_floor_next')) RETURNING *
)
INSERT INTO bench.w_floor_log (tenant_id, actor, table_name, row_key, action, old_values, event_type)
SELECT d.tenant_id, current_user, 'bench.d_floor', jsonb_build_object('id', d.id), 'DELETE', to_jsonb(d), 'd_floor.deleted'
  FROM d;
