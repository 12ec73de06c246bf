\set s random(0, 999) * 100
WITH o AS (SELECT id, qty FROM bench.w_floor WHERE id > :s AND id <= :s + 100),
     u AS (UPDATE bench.w_floor SET qty = qty + 1 WHERE id > :s AND id <= :s + 100 RETURNING *)
INSERT INTO bench.w_floor_log (tenant_id, actor, table_name, row_key, action, old_values, new_row, changed, event_type)
SELECT u.tenant_id, current_user, 'bench.w_floor', jsonb_build_object('id', u.id), 'UPDATE',
       jsonb_build_object('qty', o.qty), to_jsonb(u), '["qty"]', 'w_floor.updated'
  FROM u JOIN o USING (id);
