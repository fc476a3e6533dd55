"""What users run: predict on intervals, score variants, pre-train, benchmark. ``predictor`` and ``outputs`` are the
pieces the jobs share; a job does not import another job."""
