DROP TABLE held_receipts;
