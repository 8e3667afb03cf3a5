"""Event streams on the store, client side: the balancing rule of event processors
(``balance``)."""
