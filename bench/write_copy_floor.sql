WITH i AS (
    INSERT INTO bench.c_floor (title, qty) SELECT title, qty FROM bench.copy_source RETURNING *
)
INSERT INTO bench.w_floor_log (tenant_id, actor, table_name, row_key, action, new_row, event_type)
SELECT i.tenant_id, current_user, 'bench.c_floor', jsonb_build_object('id', i.id), 'INSERT', to_jsonb(i), 'c_floor.created'
  FROM i;
