-- refused: shop.ledger shop.order_lines
-- What the DBA does when the update to 0.2.0 refuses (docs/dba-guide.md, Upgrading): 0.1.0
-- governed a partitioned table and one whose foreign key joins two tenants' rows. Their
-- tenant roles' privileges go first (ungovern() turns row-level security off); their records
-- stay in the log. Here the tables are then dropped; a DBA may rebuild them as plain tables with
-- composite keys and govern them again after the update.
REVOKE ALL ON shop.ledger, shop.order_lines FROM PUBLIC;
SELECT steward.ungovern('shop.ledger');
SELECT steward.ungovern('shop.order_lines');
DROP TABLE shop.order_lines, shop.ledger;
