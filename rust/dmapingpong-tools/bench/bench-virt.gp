$rt << EOD
"eventfd" 92.76 223.1
"sw_sync" 104.1 298.9
"explicit poll" 112.2 342.1
"explicit wait" 99.62 333.6
"implicit" 119.8 285.0
EOD
$cpu0 << EOD
4.0 1542.168674698795
64.0 1620.253164556962
1024.0 1393.3453810991816
8192.0 1330.734243014945
EOD
$cpu1 << EOD
4.0 242.42424242424246
64.0 1133.3702268954069
1024.0 1528.5007929844203
8192.0 1298.9498903064605
EOD
$cpu2 << EOD
4.0 249.51267056530213
64.0 1171.6247139588102
1024.0 1523.898106056202
8192.0 1316.2664176172345
EOD
$cpu3 << EOD
4.0 249.0272373540856
64.0 1154.4532130777902
1024.0 1530.4104150855276
8192.0 1491.9213016976933
EOD
$job0 << EOD
64.0 10088.669950738915
1024.0 10081.686024151988
8192.0 857.6943966391613
EOD
$job1 << EOD
64.0 1293.746051800379
1024.0 4192.291699984007
8192.0 474.2554706163835
EOD
$job2 << EOD
64.0 18367.713004484303
1024.0 19686.392310003004
8192.0 10143.125229739404
EOD
$job3 << EOD
64.0 1361.9285120532002
1024.0 5564.981106440793
8192.0 7333.109544589906
EOD
$ppexplicit1 << EOD
4.0 12.532432564742743
64.0 108.45734258327597
1024.0 203.92281327352808
8192.0 220.16655016987397
EOD
$ppexplicit4 << EOD
4.0 32.263146286902554
64.0 161.2130336172076
1024.0 210.78751826290704
EOD
$ppexplicit16 << EOD
4.0 57.9222376989486
64.0 189.21326190486502
1024.0 205.1960243192012
EOD
$ppexplicit64 << EOD
4.0 74.14463725288326
64.0 191.70820195676282
EOD
$ppimplicit1 << EOD
4.0 11.244097946634458
64.0 151.41769250674653
1024.0 538.4801837221818
8192.0 646.4770019451475
EOD
$ppimplicit4 << EOD
4.0 24.65420313233577
64.0 271.9087884093568
1024.0 553.8947839940499
EOD
$ppimplicit16 << EOD
4.0 37.12650293903041
64.0 370.6997002092878
1024.0 583.0711973696136
EOD
$ppimplicit64 << EOD
4.0 43.83022209381337
64.0 362.9775222945855
EOD
$sc0 << EOD
1 324.272
2 490.912
4 478.192
8 440.85
16 457.829
32 466.7225
64 382.22525
EOD
$sc1 << EOD
4 43.519999999999996
16 48.224
64 65.32
256 132.112
512 221.392
1024 370.928
2048 498.768
EOD
$sc2 << EOD
4 11.824
16 11.792
64 11.808
256 12.008
512 11.968
1024 11.96
2048 11.96
EOD

set termoption noenhanced
set multiplot layout 2,3 title "dmapingpong bench: linux,dummy-virt, 2 CPUs, Linux 6.18.15, job engine cpu, profile full, commit 2f95b89e1952, 44 s" font ",11"
set grid
set key top left font ",8"
set style fill solid 0.6
set title "Fence round trip, two processes (us, lower is better)"
set style data histogram
set style histogram clustered gap 1
set ylabel "us"
set xtics rotate by -25 font ",8"
plot $rt using 2:xtic(1) title "median", '' using 3 title "p99"
unset style
set xtics norotate font ",9"
set style data linespoints
set logscale x 2
set xlabel "buffer size (KiB)"
set ylabel "MB/s"
set title "CPU fill + verify (MB/s, higher is better)"
plot $cpu0 using 1:2 with linespoints title "anonymous", $cpu1 using 1:2 with linespoints title "dmapingpong", $cpu2 using 1:2 with linespoints title "system heap", $cpu3 using 1:2 with linespoints title "CMA heap"
set title "Device jobs vs user space (MB/s; engine cpu)"
set logscale y 10
plot $job0 using 1:2 with linespoints title "memcpy", $job1 using 1:2 with linespoints title "copy job", $job2 using 1:2 with linespoints title "memset", $job3 using 1:2 with linespoints title "fill job"
unset logscale y
set title "Ping-pong, MB/s verified by ping (per mode and buffer count)"
plot $ppexplicit1 using 1:2 with linespoints dt 1 title "explicit x1", $ppexplicit4 using 1:2 with linespoints dt 1 title "explicit x4", $ppexplicit16 using 1:2 with linespoints dt 1 title "explicit x16", $ppexplicit64 using 1:2 with linespoints dt 1 title "explicit x64", $ppimplicit1 using 1:2 with linespoints dt 2 title "implicit x1", $ppimplicit4 using 1:2 with linespoints dt 2 title "implicit x4", $ppimplicit16 using 1:2 with linespoints dt 2 title "implicit x16", $ppimplicit64 using 1:2 with linespoints dt 2 title "implicit x64"
set title "Scale: cost per operation (us, flat is good)"
set xlabel "pairs / live buffers"
set ylabel "us"
plot $sc0 using 1:2 with linespoints title "pairs: us per round trip", $sc1 using 1:2 with linespoints title "live buffers: us per ALLOC", $sc2 using 1:2 with linespoints title "live buffers: us per fence"
unset multiplot
