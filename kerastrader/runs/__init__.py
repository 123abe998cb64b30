"""What a run is made of besides Cerebro: the benchmark it is measured against."""
