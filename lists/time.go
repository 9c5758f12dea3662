package lists

import "time"

var zeroTime time.Time
