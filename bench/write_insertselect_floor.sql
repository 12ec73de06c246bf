WITH i AS (
    INSERT INTO bench.w_floor (tenant_id, title, qty) SELECT :tenant, 'bulk item', g FROM generate_series(1, 1000) g RETURNING *
)
INSERT INTO bench.w_floor_log (tenant_id, actor, table_name, row_key, action, new_row, event_type)
SELECT i.tenant_id, current_user, 'bench.w_floor', jsonb_build_object('id', i.id), 'INSERT', to_jsonb(i), 'w_floor.created'
  FROM i;
