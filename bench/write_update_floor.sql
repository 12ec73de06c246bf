\set id random(1, 100000)
WITH o AS (SELECT qty FROM bench.w_floor WHERE id = :id),
     u AS (UPDATE bench.w_floor SET qty = qty + 1 WHERE id = :id RETURNING *)
INSERT INTO bench.w_floor_log (tenant_id, actor, table_name, row_key, action, old_values, new_row, changed, event_type)
SELECT u.tenant_id, current_user, 'bench.w_floor', jsonb_build_object('id', u.id), 'UPDATE',
       jsonb_build_object('qty', o.qty), to_jsonb(u), '["qty"]', 'w_floor.updated'
  FROM u, o;
