"""Controls, one class each on `base.Control`: how a control run's mask and start weights are
made from the ticket's. Registered in lth_core.registry.controls; adding a control is a file
here and a line there."""
