\set id random(1, 100000)
WITH o AS (SELECT * FROM bench.w_floor WHERE id = :id),
     u AS (UPDATE bench.w_floor SET qty = qty + 1 WHERE id = :id RETURNING *)
INSERT INTO bench.w_floor_log (tenant_id, actor, table_name, row_key, action, old_row, new_row, event_type)
SELECT u.tenant_id, current_user, 'bench.w_floor', jsonb_build_object('id', u.id), 'UPDATE', to_jsonb(o), to_jsonb(u), 'w_floor.updated'
  FROM u JOIN o USING (id);
