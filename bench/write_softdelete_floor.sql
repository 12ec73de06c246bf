WITH u AS (
    UPDATE bench.s_floor SET deleted_at = now() WHERE id = (SELECT nextval('bench.s_floor_next')) RETURNING *
)
INSERT INTO bench.w_floor_log (tenant_id, actor, table_name, row_key, action, old_values, new_row, changed, event_type)
SELECT u.tenant_id, current_user, 'bench.s_floor', jsonb_build_object('id', u.id), 'DELETE',
       '{"deleted_at": null}', to_jsonb(u), '["deleted_at"]', 's_floor.deleted'
  FROM u;
