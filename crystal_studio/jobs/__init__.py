"""Jobs: long operations with progress events and cooperative cancellation, and their runners."""
