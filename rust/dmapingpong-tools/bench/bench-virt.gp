$rt << EOD
"eventfd" 92.83 199.8
"sw_sync" 107.7 253.2
"explicit poll" 113.6 275.6
"explicit wait" 110.8 256.8
"implicit" 123.6 274.0
EOD
$cpu0 << EOD
4.0 1430.167597765363
64.0 1577.812018489985
1024.0 1350.3945931466485
8192.0 1297.7746973934998
EOD
$cpu1 << EOD
4.0 235.2941176470588
64.0 1133.9977851605759
1024.0 1481.8767665347655
8192.0 1280.325082540489
EOD
$cpu2 << EOD
4.0 241.73748819641173
64.0 1129.9310344827586
1024.0 1417.5309576596549
8192.0 1288.4744879652794
EOD
$cpu3 << EOD
4.0 241.50943396226413
64.0 1102.408827883192
1024.0 1418.896683121157
8192.0 1454.0674189088559
EOD
$job0 << EOD
64.0 9570.093457943924
1024.0 9496.594696420809
8192.0 828.1936655872364
EOD
$job1 << EOD
64.0 1188.6244921648288
1024.0 4092.802498048399
8192.0 450.45117029342714
EOD
$job2 << EOD
64.0 16925.619834710742
1024.0 19446.88427299703
8192.0 9308.016652907601
EOD
$job3 << EOD
64.0 1270.471464019851
1024.0 5435.514638799038
8192.0 6873.744657419304
EOD
$ppexplicit1 << EOD
4.0 12.094297727594842
64.0 99.8062841896222
1024.0 194.8000606372259
8192.0 212.22892427063104
EOD
$ppexplicit4 << EOD
4.0 29.117793417217598
64.0 157.13354049180955
1024.0 185.87126268078367
EOD
$ppexplicit16 << EOD
4.0 55.4337528758966
64.0 182.42906572468064
1024.0 183.8089626186663
EOD
$ppexplicit64 << EOD
4.0 72.63683136010073
64.0 185.78372904082659
EOD
$ppimplicit1 << EOD
4.0 10.288148535144476
64.0 136.89610801958523
1024.0 502.49383728909737
8192.0 620.441182474591
EOD
$ppimplicit4 << EOD
4.0 22.766179772782856
64.0 265.8423994613057
1024.0 347.6113850472631
EOD
$ppimplicit16 << EOD
4.0 35.875382095591775
64.0 357.50679162529866
1024.0 555.1745827359308
EOD
$ppimplicit64 << EOD
4.0 41.624059844748146
64.0 352.35663635868747
EOD
$sc0 << EOD
1 347.848
2 522.8639999999999
4 487.52799999999996
8 479.148
16 484.852
32 497.53999999999996
64 332.076
EOD
$sc1 << EOD
4 45.44
16 173.112
64 205.672
256 268.6
512 367.016
1024 391.76
2048 529.3679999999999
EOD
$sc2 << EOD
4 12.88
16 12.784
64 12.832
256 12.992
512 13.392
1024 13.248
2048 13.6
EOD

set termoption noenhanced
set multiplot layout 2,3 title "dmapingpong bench: linux,dummy-virt, 2 CPUs, Linux 6.18.15, job engine cpu, profile full, commit 85d30787ce0f, 47 s" font ",11"
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
